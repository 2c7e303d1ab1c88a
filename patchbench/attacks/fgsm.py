"""FGSM (Goodfellow et al. 2015), the one-step L∞ attack of TOMM 2022 Table 6 (conventions:
:mod:`patchbench.attacks.linf`)."""

from __future__ import annotations

import torch.nn as nn

from patchbench.attacks.base import register_attack
from patchbench.attacks.linf import LinfAttack, Objective


@register_attack
class FGSM(LinfAttack):
    r"""FGSM in the paper 'Explaining and Harnessing Adversarial Examples'
    [https://arxiv.org/abs/1412.6572] (Goodfellow, Shlens & Szegedy, ICLR 2015).

    Distance Measure : Linf

    Goodfellow et al. 2015: x_adv = x + ε · sign ∇_x CE(f(x), y).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): the one sign step's size ε, in [0, 1] pixel units (also the L∞ budget).

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> adv_images = FGSM(model, eps=8/255)(images, labels)
    """

    name = "fgsm"
    display_name = "FGSM"

    def __init__(self, model: nn.Module, eps: float):
        super().__init__(model, eps, steps=1, step_size=eps)

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        return self.sign_ascent(x, x, labels, objective or self.objective, 1, self.eps)
