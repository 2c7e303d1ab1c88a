"""FGSM (Goodfellow et al. 2015), the one-step L∞ attack of TOMM 2022 Table 6 (conventions:
:mod:`patchbench.attacks.linf`)."""

from __future__ import annotations

import torch.nn as nn

from patchbench.attacks.linf import LinfAttack, Objective


class FGSM(LinfAttack):
    """Goodfellow et al. 2015: x_adv = x + ε · sign ∇_x CE(f(x), y)."""

    name = "fgsm"
    display_name = "FGSM"

    def __init__(self, model: nn.Module, eps: float):
        super().__init__(model, eps, steps=1, step_size=eps)

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        return self.sign_ascent(x, x, labels, objective or self.objective, 1, self.eps)
