"""StepLL and Iter-StepLL (Kurakin et al. 2017; TOMM 2022 Eq. 4, Table 6): steps toward the clean
image's least-likely class (conventions: :mod:`patchbench.attacks.linf`)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.linf import LinfAttack, Objective
from patchbench.util import eval_mode


def least_likely_class(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """y_LL of Eq. 4: the class with the lowest logit on the clean image."""
    with torch.no_grad(), eval_mode(model):
        return model(images).argmin(1)


class StepLL(LinfAttack):
    """Eq. 4 (Kurakin et al. 2017; Tramèr et al. 2018): x_adv = x − ε · sign ∇_x CE(f(x), y_LL),
    y_LL the least-likely class of the clean image; ascends ``-CE(·, y_LL)``. ``labels`` unused
    (an A3 wrapper uses them for its attention maps)."""

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


class IterStepLL(StepLL):
    """Iterative StepLL (Kurakin et al. 2017): ``steps`` steps of Eq. 4 of size ``step_size``
    toward the clean image's least-likely class, each projected onto the ε-ball and [0, 1]; no
    random start. Default step size 2.5·ε/steps as for PGD."""

    name = "iter-stepll"
    display_name = "Iter-StepLL"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None):
        LinfAttack.__init__(self, model, eps, steps, step_size)

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        y_ll = least_likely_class(self.model, x)
        return self.sign_ascent(x, x, y_ll, objective or self.objective, self.steps, self.step_size)
