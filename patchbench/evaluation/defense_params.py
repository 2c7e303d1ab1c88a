"""Defenses as a preset configures them: parameters (the preset's entry, then overrides) and λ lists."""

from __future__ import annotations

from patchbench.config import Preset
from patchbench.defenses import DEFENSES, build_defense
from patchbench.defenses.base import Defense, NoDefense, is_undefended
from patchbench.evaluation.engine import DefenseRun
from patchbench.errors import PatchbenchError
from patchbench.models import Classifier

DEFAULT_LAMBDA = 2.3  # λ of a defense the preset does not list (the ICAART tables' middle λ)


def defense_params(preset: Preset | None, name: str, overrides: dict | None = None) -> tuple[dict, list[float]]:
    """(parameters, λ list) of defense ``name``: the preset's entry (if any) updated by ``overrides``;
    a defense the preset does not list gets its class defaults and λ = :data:`DEFAULT_LAMBDA`."""
    if name not in DEFENSES:
        raise PatchbenchError(f"unknown defense {name!r}; known: {', '.join(DEFENSES)}")
    cfg = next((d for d in preset.defenses if d.name == name), None) if preset is not None else None
    params = {**(cfg.params if cfg else {}), **(overrides or {})}
    DEFENSES[name].check_params(params)
    return params, list(cfg.lambdas) if cfg and cfg.lambdas else [DEFAULT_LAMBDA]


def resolve_defense(preset: Preset | None, name: str, model=None, overrides: dict | None = None) -> tuple[Defense, list[float]]:
    """The built defense ``name`` and its λ list (see :func:`defense_params`)."""
    params, lambdas = defense_params(preset, name, overrides)
    return build_defense(name, params, model), lambdas


def defense_runs(preset: Preset, model: Classifier, names: list[str] | None, lambdas: list[float] | None,
                 overrides: dict | None = None, include_none: bool = True) -> list[DefenseRun]:
    """``none`` plus the named defenses (default: the preset's), each with its λ list."""
    runs = [DefenseRun(NoDefense(), [None])] if include_none else []
    for name in names if names is not None else [d.name for d in preset.defenses]:
        if is_undefended(name):  # the first run already
            continue
        defense, lams = resolve_defense(preset, name, model, overrides)
        runs.append(DefenseRun(defense, list(lambdas) if lambdas is not None else lams))
    return runs
