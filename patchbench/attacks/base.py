"""Shared base (torchattacks style): parameters in ``__init__``, the algorithm in ``forward``.

The configuration contract is the same for every attack, evasion or patch:

* ``check_config(cfg, image_size, where)`` checks a preset entry naming the attack against the
  preset's image size, before any work (one-line :class:`~patchbench.errors.PatchbenchError`
  naming the key, prefixed by ``where``);
* ``from_config(model, cfg, image_size, progress=False)`` checks the entry and builds the attack
  on ``model``.

An evasion attack reads an :class:`~patchbench.config.EvasionConfig` (the defaults here: ε,
steps, step size and constructor ``params``); a patch attack
(:class:`~patchbench.attacks.patch.PatchAttack`) reads an :class:`~patchbench.config.AttackConfig`
carrying exactly one patch size.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod

import torch
import torch.nn as nn

from patchbench.errors import check, is_int, is_number
from patchbench.registry import Registry, own_name

NO_ATTACK = "none"  # the ``attack`` of a clean cell in stored results


class Attack(ABC):
    """``attack(images, labels) -> adversarial images`` in [0, 1], on the images' device.

    Capabilities generic code asks instead of comparing names: ``display_name`` (the tables' name, a
    class's own: a subclass does not inherit it; default ``name``), ``steps_in_label`` (its columns
    carry the step count: PGD10, CW100) and ``shares_trajectory_across_steps`` (``forward_at(images,
    labels, ks)`` gives the k-step attack for every k in ks from one run, so the grid runs PGD-10/20/40
    once; :class:`~patchbench.evaluation.grid.SharedTrajectory`).
    """

    name = "attack"
    display_name: str | None = None
    steps_in_label: bool = False
    shares_trajectory_across_steps: bool = False

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

    @classmethod
    def column_label(cls, steps: int | None = None) -> str:
        """The table column of the attack at ``steps`` steps: ``PGD10``, ``FGSM``, ``npixel``."""
        base = vars(cls).get("display_name") or cls.name
        return f"{base}{steps}" if steps and cls.steps_in_label else base

    # ---- configuration (an attack checks its own preset entry, as a defense checks its params)

    @classmethod
    def accepted_params(cls) -> set[str]:
        return set(inspect.signature(cls.__init__).parameters) - {"self", "model"}

    @classmethod
    def check_config(cls, cfg, image_size: int, where: str = "attack") -> None:
        """Check an :class:`~patchbench.config.EvasionConfig` naming this attack: ε in (0, 1],
        integer steps, and only parameters the constructor takes (``image_size`` is for attacks
        whose parameters depend on it). One-line PatchbenchError."""

        check(is_number(cfg.eps) and 0 < cfg.eps <= 1,
              f"{where}.eps must be a number in (0, 1] (pixel scale; 8/255 = 0.0314), got {cfg.eps!r}")
        check(cfg.steps is None or (is_int(cfg.steps) and cfg.steps >= 1), f"{where}.steps must be an integer >= 1, got {cfg.steps!r}")
        check(cfg.step_size is None or (is_number(cfg.step_size) and cfg.step_size > 0),
              f"{where}.step_size must be a number > 0, got {cfg.step_size!r}")
        accepted = cls.accepted_params()
        for key in ("steps", "step_size"):
            check(getattr(cfg, key) is None or key in accepted, f"{where}: attack {cfg.name} takes no {key}")
        check(isinstance(cfg.params, dict), f"{where}.params must be a mapping")
        for key in cfg.params:
            check(key in accepted and key != "eps", f"{where}.params: attack {cfg.name} has no parameter {key!r}")

    @classmethod
    def from_config(cls, model: nn.Module, cfg, image_size: int, progress: bool = False) -> "Attack":
        """Build from an :class:`~patchbench.config.EvasionConfig` (checked by :meth:`check_config`);
        an evasion attack shows no progress of its own."""
        cls.check_config(cfg, image_size, where=f"attack {cfg.name}")
        accepted = cls.accepted_params()
        kwargs = {"eps": cfg.eps, **cfg.params}
        for key in ("steps", "step_size", "seed"):
            if getattr(cfg, key) is not None and key in accepted:
                kwargs[key] = getattr(cfg, key)
        return cls(model, **kwargs)


def check_attack_class(cls) -> None:
    """Refuse an attack class whose declared capabilities it cannot keep (one-line PatchbenchError)."""
    check(isinstance(cls, type) and issubclass(cls, Attack), f"{cls!r} is not an Attack subclass")
    check(not cls.shares_trajectory_across_steps or callable(getattr(cls, "forward_at", None)),
          f"attack class {cls.__name__} shares a trajectory across steps, so it must define forward_at(images, labels, ks)")


ATTACKS: Registry = Registry("attack", check_attack_class, own_name)  # name -> class, in registration order
register_attack = ATTACKS.register  # a class decorator (timm's pattern): @register_attack above the class
