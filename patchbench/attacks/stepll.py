"""StepLL and Iter-StepLL (Kurakin et al. 2017; TOMM 2022 Eq. 4, Table 6): steps toward the clean
image's least-likely class (conventions: :mod:`patchbench.attacks.linf`)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.base import register_attack
from patchbench.attacks.linf import LinfAttack, Objective
from patchbench.util import eval_mode


def least_likely_class(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """y_LL of Eq. 4: the class with the lowest logit on the clean image."""
    with torch.no_grad(), eval_mode(model):
        return model(images).argmin(1)


@register_attack
class StepLL(LinfAttack):
    r"""StepLL (the least-likely class method) in the paper 'Adversarial Machine Learning at Scale'
    [https://arxiv.org/abs/1611.01236] (Kurakin, Goodfellow & Bengio, ICLR 2017), as TOMM 2022 Eq. 4
    (after Tramèr et al. 2018) writes it.

    Distance Measure : Linf

    Eq. 4 (Kurakin et al. 2017; Tramèr et al. 2018): x_adv = x − ε · sign ∇_x CE(f(x), y_LL),
    y_LL the least-likely class of the clean image; ascends ``-CE(·, y_LL)``. ``labels`` unused
    (an A3 wrapper uses them for its attention maps).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): the step ε away from the least-likely class's loss, in [0, 1] pixel units.

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = StepLL(model, eps=8/255)
        >>> adv_images = attack(images, labels)
    """

    name = "stepll"
    display_name = "StepLL"

    def __init__(self, model: nn.Module, eps: float):
        super().__init__(model, eps, steps=1, step_size=eps)

    def loss(self, logits, targets):
        return -F.cross_entropy(logits, targets, reduction="none")

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        y_ll = least_likely_class(self.model, x)
        return self.sign_ascent(x, x, y_ll, objective or self.objective, 1, self.eps)


@register_attack
class IterStepLL(StepLL):
    r"""Iter-StepLL (the iterative least-likely class method) in the paper 'Adversarial examples in the
    physical world' [https://arxiv.org/abs/1607.02533] (Kurakin, Goodfellow & Bengio, ICLR-W 2017).

    Distance Measure : Linf

    Iterative StepLL (Kurakin et al. 2017): ``steps`` steps of Eq. 4 of size ``step_size``
    toward the clean image's least-likely class, each projected onto the ε-ball and [0, 1]; no
    random start. Default step size 2.5·ε/steps as for PGD.

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): maximum perturbation ε, in [0, 1] pixel units.
        steps (int): number of steps. (Default: 10)
        step_size (float | None): step size α (None: 2.5 · ε / steps). (Default: None)

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = IterStepLL(model, eps=4/255, steps=3)
        >>> adv_images = attack(images, labels)
    """

    name = "iter-stepll"
    display_name = "Iter-StepLL"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None):
        LinfAttack.__init__(self, model, eps, steps, step_size)

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        y_ll = least_likely_class(self.model, x)
        return self.sign_ascent(x, x, y_ll, objective or self.objective, self.steps, self.step_size)
