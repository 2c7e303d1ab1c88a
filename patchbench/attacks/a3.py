"""A3: Attention-Augmented Adversarial Attack (TOMM 2022 Sec. 4.3, Eq. 11–13).

The attention attack loss (Eq. 11) compares the clean image's binarized attention area
``Att(x)`` (Eq. 3, fixed before the attack starts) with the current adversarial image's Grad-CAM
map ``g(x_adv)`` (differentiable, :mod:`patchbench.models.gradcam`):

    D(x_adv) = ‖Att(x) − g(x_adv)‖₁

and the attack pushes D *up*: attention moves away from where it was.

Sign convention. Eq. 12–13 write StepLL as a descent: TotalAttackLoss = L(f(x), y_LL) − σ·D and
x_adv = x − ε·sign ∇(TotalAttackLoss), i.e. lower the least-likely-class loss and raise D. Every
attack of :mod:`patchbench.attacks.linf` *ascends* an objective J (StepLL's J = −L(f(x), y_LL)), so
Eq. 12–13 are exactly ``J + σ·D`` ascended; for PGD (ascent on CE of the true class) the same
``J + σ·D`` raises the loss and the attention deviation together. One rule for all base attacks:
J_A3 = J_base + σ·D.

Choices where the paper is silent:

* g is normalized per image to [0, 1] (divided by its maximum), so it is comparable with the
  {0, 1} mask Att;
* both maps are taken at the CAM layer's grid (no upsampling; the paper uses the raw map when it
  needs no resize) and D is the *mean* absolute difference over the grid cells, per image, so
  σ = 10 weighs against a per-image CE of order 1 whatever the grid size;
* the class of both maps is the true label passed to the attack (Fig. 1 shows maps "toward the
  true labels");
* κ of Att is each image's mean map value (the paper's default).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from patchbench.attacks.base import Attack, register_attack
from patchbench.attacks.linf import LinfAttack, check_nonnegative
from patchbench.attacks.pgd import PGD
from patchbench.attacks.stepll import IterStepLL, StepLL
from patchbench.models.gradcam import GradCAM, attention_area, gradcam_for
from patchbench.util import eval_mode

SIGMA = 10.0  # Sec. 5.6


class A3(Attack):
    """Wrap an L∞ attack: its objective J becomes J + σ·‖Att(x) − g(x_adv)‖₁ (Eq. 11–13).

    ``cam``: a :class:`GradCAM` for the attacked model, or a layer name, or None for the model's
    registered ``cam_layer`` (:func:`patchbench.models.gradcam.gradcam_for`).

    A registered A3 attack names the L∞ attack it augments as ``base``; its ``name`` and ``display_name``
    follow from the base's (``pgd`` -> ``pgd+a3``, ``PGD`` -> ``PGD+A3``), as a wrapped attack's ``name`` does.
    """

    base: type[LinfAttack] | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "base" in vars(cls):
            cls.name, cls.display_name = f"{cls.base.name}+a3", f"{cls.base.column_label()}+A3"

    def __init__(self, attack: LinfAttack, sigma: float = SIGMA, kappa: str | float = "mean",
                 cam: GradCAM | str | None = None):
        super().__init__(attack.model)
        self.attack = attack
        self.name = f"{attack.name}+a3"
        self.sigma = check_nonnegative(sigma, "sigma", self.name)
        self.kappa = kappa
        if cam is None:
            cam = gradcam_for(attack.model, normalize=True)
        elif isinstance(cam, str):
            cam = GradCAM(attack.model, cam, normalize=True)
        self.cam = cam

    def deviation(self, att: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Eq. 11 without its sign: per-image mean |Att(x) − g(x_adv)| over the grid cells."""
        return (att - g).abs().flatten(1).mean(1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = images.detach()
        with eval_mode(self.model):
            att = attention_area(self.cam(x, labels, create_graph=False, upsample=False), self.kappa)

        def objective(x_adv: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            g, logits = self.cam.compute(x_adv, labels, create_graph=True, upsample=False)
            return (self.attack.loss(logits, targets) + self.sigma * self.deviation(att, g)).sum()

        return self.attack.forward(x, labels, objective=objective)

    def __repr__(self) -> str:
        return f"A3({self.attack!r}, sigma={self.sigma:g}, kappa={self.kappa!r})"


@register_attack
class PGDA3(A3):
    r"""PGD + A3, the attention-augmented attack of TOMM 2022 (Sec. 4.3, Eq. 11–13; module docstring).

    Distance Measure : Linf

    PGD + A3 ("pgd+a3").

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): maximum perturbation ε, in [0, 1] pixel units.
        steps, step_size, random_start, seed: as :class:`~patchbench.attacks.pgd.PGD`'s.
        sigma, kappa, cam: σ, the weight of D (Eq. 12; default 10); κ, the threshold of Att(x) (Eq. 3: ``mean`` per image,
            or a number); the Grad-CAM g(x_adv) is read from, or its layer's name (None: the model's CAM layer).

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = PGDA3(model, eps=8/255, steps=10, sigma=10)
        >>> adv_images = attack(images, labels)
    """

    base = PGD

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, seed: int = 0, *, sigma: float = SIGMA, kappa: str | float = "mean",
                 cam: GradCAM | str | None = None):
        super().__init__(self.base(model, eps, steps, step_size, random_start, seed), sigma, kappa, cam)


@register_attack
class StepLLA3(A3):
    r"""StepLL + A3, the attention-augmented attack of TOMM 2022 (Sec. 4.3, Eq. 11–13; module docstring).

    Distance Measure : Linf

    StepLL + A3 ("stepll+a3"), Eq. 12–13 literally.

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): maximum perturbation ε, in [0, 1] pixel units.
        sigma, kappa, cam: σ, the weight of D (Eq. 12; default 10); κ, the threshold of Att(x) (Eq. 3: ``mean`` per image,
            or a number); the Grad-CAM g(x_adv) is read from, or its layer's name (None: the model's CAM layer).

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = StepLLA3(model, eps=4/255, sigma=10)
        >>> adv_images = attack(images, labels)
    """

    base = StepLL

    def __init__(self, model: nn.Module, eps: float, *, sigma: float = SIGMA, kappa: str | float = "mean",
                 cam: GradCAM | str | None = None):
        super().__init__(self.base(model, eps), sigma, kappa, cam)


@register_attack
class IterStepLLA3(A3):
    r"""Iter-StepLL + A3, the attention-augmented attack of TOMM 2022 (Sec. 4.3, Eq. 11–13; module docstring).

    Distance Measure : Linf

    Iter-StepLL + A3 ("iter-stepll+a3"; Table 7 uses ε = 4/255, 3 iterations, σ = 10).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): maximum perturbation ε, in [0, 1] pixel units.
        steps, step_size: as :class:`~patchbench.attacks.stepll.IterStepLL`'s.
        sigma, kappa, cam: σ, the weight of D (Eq. 12; default 10); κ, the threshold of Att(x) (Eq. 3: ``mean`` per image,
            or a number); the Grad-CAM g(x_adv) is read from, or its layer's name (None: the model's CAM layer).

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> adv_images = IterStepLLA3(model, eps=4/255, steps=3, sigma=10)(images, labels)  # Table 7's setting
    """

    base = IterStepLL

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None, *,
                 sigma: float = SIGMA, kappa: str | float = "mean", cam: GradCAM | str | None = None):
        super().__init__(self.base(model, eps, steps, step_size), sigma, kappa, cam)
