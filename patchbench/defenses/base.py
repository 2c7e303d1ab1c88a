"""Defense contract (DESIGN.md): batched, on the tensor's device, batch-invariant.

``maps(x, model)`` computes everything that does not depend on λ (gradient maps, masks,
saliency) once per batch; ``apply(x, maps, lam)`` is cheap, so a λ sweep pays for the maps once.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from patchbench.errors import PatchbenchError


class Defense(ABC):
    name: ClassVar[str] = "defense"
    uses_lambda: ClassVar[bool] = True

    @abstractmethod
    def maps(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """λ-independent tensors for the batch ``x`` (N×C×H×W in [0, 1])."""

    @abstractmethod
    def apply(self, x: torch.Tensor, maps: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
        """The defended images for smoothing factor ``lam``, in [0, 1]."""

    def __call__(self, x: torch.Tensor, lam: float, model: torch.nn.Module | None = None) -> torch.Tensor:
        return self.apply(x, self.maps(x, model), lam)

    # ---- parameters (dataclass fields of the subclass) --------------------------------------

    def params(self) -> dict[str, Any]:
        """The parameters that define the defense (go into run ids and result rows)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("param", True)}

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("param", True)] if dataclasses.is_dataclass(cls) else []

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - set(cls.param_names()))
        if unknown:
            raise PatchbenchError(f"unknown parameter {unknown[0]!r} for defense {cls.name}; "
                                  f"allowed: {', '.join(cls.param_names()) or 'none'}")

    @classmethod
    def from_params(cls, params: dict[str, Any], model=None) -> "Defense":
        return cls(**params)


@dataclasses.dataclass
class NoDefense(Defense):
    """Identity: the undefended baseline row of every table."""

    name: ClassVar[str] = "none"
    uses_lambda: ClassVar[bool] = False

    def maps(self, x, model=None):
        return {}

    def apply(self, x, maps, lam):
        return x
