"""Defense contract: batched, on the tensor's device, batch-invariant, and self-describing about
its gradient.

``maps(x, model)`` computes everything that does not depend on λ (gradient maps, masks,
saliency) once per batch; ``apply(x, maps, lam)`` is cheap, so a λ sweep pays for the maps once.

Every defense also declares how an adaptive (white-box) attacker differentiates it
(Athalye et al. 2018's taxonomy), so an adaptive attack works through any registered defense
with no second copy of the defense:

* ``gradient = "exact"``: ``maps`` and ``apply`` are differentiable as written; autograd gives
  the true gradient (almost everywhere).
* ``gradient = "bpda"``: the forward value is the defense's, the backward pass is the identity
  (Backward Pass Differentiable Approximation with g(x) = x) — for transforms with no useful
  derivative (codecs, iterative solvers, hard masks with inpainting).
* ``gradient = "partial"``: the defense overrides :meth:`differentiable_maps`, differentiating
  some parts exactly and holding others constant; its docstring says which, and
  ``grad_options`` names the choices an attacker may switch (the first value is the default).

:meth:`differentiable` returns T(x) with the declared gradient and exactly the forward value of
``apply(x, maps(x), lam)``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from patchbench.errors import PatchbenchError

GRADIENTS = ("exact", "bpda", "partial")


class Defense(ABC):
    name: ClassVar[str] = "defense"
    uses_lambda: ClassVar[bool] = True
    gradient: ClassVar[str] = "bpda"
    grad_options: ClassVar[dict[str, tuple[str, ...]]] = {}
    saved_maps: ClassVar[tuple[str, ...]] = ()  # maps worth an image of their own (`defend --save-maps`)

    @abstractmethod
    def maps(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """λ-independent tensors for the batch ``x`` (N×C×H×W in [0, 1])."""

    @abstractmethod
    def apply(self, x: torch.Tensor, maps: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
        """The defended images for smoothing factor ``lam``, in [0, 1]."""

    def __call__(self, x: torch.Tensor, lam: float, model: torch.nn.Module | None = None) -> torch.Tensor:
        return self.apply(x, self.maps(x, model), lam)

    # ---- gradients (adaptive attacks) ------------------------------------------------------

    @classmethod
    def resolve_grad_options(cls, options: dict[str, str] | None) -> dict[str, str]:
        """The defense's gradient choices: its defaults updated by the ``options`` it declares
        (options other defenses declare are ignored, so one dict can serve several defenses)."""
        resolved = {k: v[0] for k, v in cls.grad_options.items()}
        for key, value in (options or {}).items():
            if key in cls.grad_options:
                if value not in cls.grad_options[key]:
                    raise PatchbenchError(f"{cls.name}: {key} must be one of {', '.join(cls.grad_options[key])}, got {value!r}")
                resolved[key] = value
        return resolved

    def differentiable_maps(self, x: torch.Tensor, model: torch.nn.Module | None = None,
                            **options: str) -> dict[str, torch.Tensor]:
        """``maps`` with the autograd graph to x (``exact`` defenses: ``maps`` itself)."""
        return self.maps(x, model)

    def differentiable(self, x: torch.Tensor, lam: float | None, model: torch.nn.Module | None = None,
                       options: dict[str, str] | None = None) -> torch.Tensor:
        """T(x) with the gradient the defense declares (see the module docstring)."""
        if self.gradient == "bpda":
            xd = x.detach()
            y = self.apply(xd, self.maps(xd, model), lam).detach()
            return y + (x - x.detach())  # forward value y exactly; d/dx = identity
        return self.apply(x, self.differentiable_maps(x, model, **self.resolve_grad_options(options)), lam)

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
    gradient: ClassVar[str] = "exact"

    def maps(self, x, model=None):
        return {}

    def apply(self, x, maps, lam):
        return x
