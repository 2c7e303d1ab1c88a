"""Defense contract: batched, on the tensor's device, batch-invariant, and self-describing about
its gradient and parameters.

``maps(x, model)`` computes everything that does not depend on λ (gradient maps, masks,
saliency) once per batch; ``apply(x, maps, lam)`` is cheap, so a λ sweep pays for the maps once.

λ-free defenses (``uses_lambda = False``: filters, codecs, inpainting) have nothing to do per λ:
their ``maps`` computes the defended image under the key :data:`OUT` (``"out"``), next to any
other maps worth keeping, and they leave ``apply`` to the base, which returns ``maps["out"]``.
A map under ``"mask"`` (N×1×H×W, the pixels the defense acts on: DW's inpainted region, SLGS's
smoothed one) is measured by the engine: each cell's ``masked_pct`` is its mean share, in %.
A defense with a smoothing factor (``uses_lambda = True``) overrides ``apply``. A certifying
defense (PatchCleanser; ``certifies = True``) also puts under :data:`CERTIFIED` the label it certifies
for each image.

Generic code decides by the capabilities a class declares, never by its name: ``is_identity`` (the
undefended baseline, :class:`NoDefense`: the engine reuses the undefended clean pass for it and
measures no SSIM), ``certifies`` (its cells may carry a certificate), ``uses_lambda`` and ``gradient``.
Stored cells name the undefended baseline :data:`UNDEFENDED` (the identity defense's registry name);
code reading cells asks :func:`is_undefended`.

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

Parameters are the fields of the subclass, a dataclass; ``metadata={"param": False}`` marks a
field that is not a parameter (e.g. what :meth:`from_params` takes from the model). Their values
are checked on construction by :meth:`validate` (through :meth:`require`, so every message reads
``<defense> <field> must be <rule>, got <value>``); :meth:`check_params` checks a parameter dict
without a model, :meth:`from_params` builds the defense, given the model where one is needed.

The registry is built by :func:`registry` from a listing of classes keyed by their ``name``; it
refuses a repeated name and a class that breaks this contract (:func:`check_defense_class`).
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from patchbench.defenses.gradcheck import probe_at_registration
from patchbench.errors import check
from patchbench.registry import Registry, own_name

GRADIENTS = ("exact", "bpda", "partial")
OUT = "out"  # the key under which a λ-free defense's maps hold its output
# the key under which a certifying defense's maps hold, per image, the label it certifies robust (int64,
# -1: none); the engine stores per image whether it equals the true label (PatchCleanser)
CERTIFIED = "certified"
MASK = "mask"  # the key of the pixels a defense acts on (N×1×H×W); the engine reports their share (masked_pct)
UNDEFENDED = "none"  # the identity defense's name: the ``defense`` of every undefended cell in stored results


def is_undefended(defense: str) -> bool:
    """Whether a stored cell's ``defense`` is the undefended baseline (:class:`NoDefense`)."""
    return defense == UNDEFENDED


def choices(options) -> str:
    """``a or b`` / ``one of a, b, c``: the rule text for a field restricted to ``options``."""
    options = [str(o) for o in options]
    return " or ".join(options) if len(options) == 2 else "one of " + ", ".join(options)


class Defense(ABC):
    name: ClassVar[str] = "defense"
    uses_lambda: ClassVar[bool] = True
    gradient: ClassVar[str] = "bpda"
    grad_options: ClassVar[dict[str, tuple[str, ...]]] = {}
    saved_maps: ClassVar[tuple[str, ...]] = ()  # maps worth an image of their own (`defend --save-maps`)
    is_identity: ClassVar[bool] = False  # changes nothing: the undefended baseline (NoDefense)
    certifies: ClassVar[bool] = False  # its maps may hold CERTIFIED labels (certified accuracy, PatchCleanser)

    @abstractmethod
    def maps(self, x: torch.Tensor, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """λ-independent tensors for the batch ``x`` (N×C×H×W in [0, 1]); a λ-free defense's
        output under :data:`OUT`."""

    def apply(self, x: torch.Tensor, maps: dict[str, torch.Tensor], lam: float | None = None) -> torch.Tensor:
        """The defended images for smoothing factor ``lam``, in [0, 1]. Here: a λ-free defense's
        output, ``maps["out"]``; defenses with a smoothing factor override this."""
        return maps[OUT]

    def __call__(self, x: torch.Tensor, lam: float | None, model: torch.nn.Module | None = None) -> torch.Tensor:
        return self.apply(x, self.maps(x, model), lam)

    # ---- gradients (adaptive attacks) ------------------------------------------------------

    @classmethod
    def resolve_grad_options(cls, options: dict[str, str] | None) -> dict[str, str]:
        """The defense's gradient choices: its defaults updated by the ``options`` it declares
        (options other defenses declare are ignored, so one dict can serve several defenses)."""
        resolved = {k: v[0] for k, v in cls.grad_options.items()}
        for key, value in (options or {}).items():
            if key in cls.grad_options:
                check(value in cls.grad_options[key],
                      f"{cls.name}: {key} must be one of {', '.join(cls.grad_options[key])}, got {value!r}")
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

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check the parameter values with :meth:`require` (a subclass adding fields extends this
        and calls ``super().validate()``). No model here: checks that need one go in ``from_params``."""

    def require(self, field: str, ok: bool, rule: str) -> None:
        """Refuse the value of ``field`` unless ``ok``: ``<name> <field> must be <rule>, got <value>``."""
        check(ok, f"{self.name} {field} must be {rule}, got {getattr(self, field)!r}")

    def require_choice(self, field: str, options) -> None:
        """``field`` is one of ``options``."""
        self.require(field, getattr(self, field) in options, choices(options))

    def params(self) -> dict[str, Any]:
        """The parameters that define the defense (go into run ids and result rows)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("param", True)}

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("param", True)] if dataclasses.is_dataclass(cls) else []

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Refuse unknown parameter names and bad values (no model needed)."""
        unknown = sorted(set(params) - set(cls.param_names()))
        check(not unknown, f"unknown parameter {', '.join(map(repr, unknown))} for defense {cls.name}; "
                           f"allowed: {', '.join(cls.param_names()) or 'none'}")
        cls(**params)  # validate() runs on construction

    @classmethod
    def from_params(cls, params: dict[str, Any], model=None) -> "Defense":
        return cls(**params)


@dataclasses.dataclass
class NoDefense(Defense):
    """Identity: the undefended baseline row of every table."""

    name: ClassVar[str] = UNDEFENDED
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"
    is_identity: ClassVar[bool] = True

    def maps(self, x, model=None):
        return {OUT: x}


# ---- registration ----------------------------------------------------------------------------


def _is_tuple_of_str(v) -> bool:
    return isinstance(v, tuple) and len(v) > 0 and all(isinstance(s, str) and s for s in v)


SHIPPED = "patchbench.defenses."  # the modules of the shipped listing


def check_defense_class(cls) -> None:
    """Refuse a class that breaks the contract of the module docstring (PatchbenchError). A class
    declaring an ``exact`` gradient is also probed against finite differences of its output
    (:mod:`patchbench.defenses.gradcheck`), except the shipped ones, which the tests probe (a probe
    of PatchCleanser's default 36 masks takes seconds: too long for every import)."""
    check(isinstance(cls, type) and issubclass(cls, Defense), f"{cls!r} is not a Defense subclass")
    where = f"defense class {cls.__name__}"
    check("__dataclass_fields__" in vars(cls), f"{where} must be a @dataclasses.dataclass (its fields are its parameters)")
    check(not inspect.isabstract(cls), f"{where} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    check("name" in vars(cls) and isinstance(cls.name, str) and cls.name != "",
          f"{where} must declare its own name (a non-empty string)")
    check(cls.gradient in GRADIENTS, f"{where}: gradient must be {choices(GRADIENTS)}, got {cls.gradient!r}")
    for flag in ("uses_lambda", "is_identity", "certifies"):
        check(isinstance(getattr(cls, flag), bool), f"{where}: {flag} must be a bool, got {getattr(cls, flag)!r}")
    check(not cls.uses_lambda or cls.apply is not Defense.apply,
          f"{where} uses λ, so it must override apply (the base's apply returns maps['{OUT}'])")
    check(isinstance(cls.saved_maps, tuple) and all(isinstance(s, str) for s in cls.saved_maps),
          f"{where}: saved_maps must be a tuple of map names, got {cls.saved_maps!r}")
    options = cls.grad_options
    check(isinstance(options, dict), f"{where}: grad_options must be a dict, got {options!r}")
    if cls.gradient == "partial":
        check(cls.differentiable_maps is not Defense.differentiable_maps,
              f"{where}: a 'partial' gradient must override differentiable_maps")
        check(len(options) > 0, f"{where}: a 'partial' gradient must declare grad_options")
        check(all(isinstance(k, str) and _is_tuple_of_str(v) for k, v in options.items()),
              f"{where}: grad_options must map names to non-empty tuples of strings, got {options!r}")
    else:
        check(not options, f"{where}: a {cls.gradient!r} gradient has no choices, but declares grad_options {options!r}")
    if not cls.__module__.startswith(SHIPPED):  # the shipped listing: tests/test_defense_contract.py probes it
        probe_at_registration(cls)


DEFENSES: Registry = Registry("defense", check_defense_class, own_name)  # name -> class, in registration order
register_defense = DEFENSES.register  # a class decorator (timm's pattern): @register_defense above @dataclass
register_defense(NoDefense)  # the identity first: the undefended row of every table
