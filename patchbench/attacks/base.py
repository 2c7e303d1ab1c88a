"""Shared base (torchattacks style): parameters in ``__init__``, the algorithm in ``forward``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn as nn


class Attack(ABC):
    """``attack(images, labels) -> adversarial images`` in [0, 1], on the images' device."""

    name = "attack"

    def __init__(self, model: nn.Module, targeted: bool = False, target: int | None = None):
        self.model = model
        self.targeted = targeted
        self.target = target

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abstractmethod
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return adversarial versions of ``images`` (each attack file implements it)."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.forward(images, labels)
