"""Experiments: what ``sweep``/``reproduce`` run for a preset of each kind (``Preset.experiment``).

* ``patch-defense``: one classifier; clean and patched images (the preset's trained patches and its
  ``patches:`` files) × (no defense + each defense × λ);
* ``evasion``: one classifier per training objective (``trainings``) × (clean + each evasion
  attack of ``evasion``).

A paper may bring its own (``Paper.experiments``); :func:`patchbench.papers.all_experiments`
joins both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from patchbench.attacks.patch import Patch
from patchbench.cache.models import ensure_model
from patchbench.cache.patches import ensure_patches, preset_patches
from patchbench.config import Preset
from patchbench.evaluation.defense_params import defense_runs
from patchbench.errors import PatchbenchError
from patchbench.evaluation.grid import run_evasion_grid, run_grid
from patchbench.registry import Registry
from patchbench.store.results import ResultStore
from patchbench.evaluation.stages import stage
from patchbench.util import console


@dataclass(frozen=True)
class Experiment:
    """What ``sweep``/``reproduce`` run for a preset of this kind."""

    name: str
    description: str
    check: Callable[[Preset], None]
    sweep: Callable[..., pd.DataFrame]


def _check_patch_defense(p: Preset) -> None:
    if p.trainings or p.evasion:
        raise PatchbenchError(f"preset {p.name}: trainings/evasion belong to experiment 'evasion', not 'patch-defense'")


def _check_evasion(p: Preset) -> None:
    if not p.evasion:
        raise PatchbenchError(f"preset {p.name}: experiment 'evasion' needs a non-empty evasion list")
    if p.attacks:
        raise PatchbenchError(f"preset {p.name}: patch attacks belong to experiment 'patch-defense', not 'evasion'")


def sweep_patch_defense(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True, *,
                        defenses: list[str] | None = None, lambdas: list[float] | None = None,
                        patches: list[Patch] | None = None) -> pd.DataFrame:
    """Model (trained/cached), patches (given, or the preset's, trained/cached), then clean and
    attacked × (none + defenses) × λ."""
    with stage("models"):
        loaded = ensure_model(preset, store, device, progress=progress)
    with stage("patches"):  # given on the command line, else the preset's: trained (cached) plus its patches: files
        patch_list = patches or ensure_patches(preset, loaded, store, device, progress=progress) + preset_patches(preset)
    runs = defense_runs(preset, loaded.model, defenses, lambdas)
    with stage("grid"):
        return run_grid(preset, loaded, patch_list, runs, store, device, progress=progress)


def refuse_grid_options(preset: Preset, kind: str, defenses, lambdas, patches) -> None:
    """An experiment whose grid is fixed by its preset refuses sweep's --defenses, --lambdas and --patches."""
    if defenses or lambdas or patches:
        raise PatchbenchError(f"preset {preset.name} is {kind} experiment: --defenses, --lambdas and --patches "
                              "apply to patch-defense presets")


def sweep_evasion(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True, *,
                  defenses=None, lambdas=None, patches=None) -> pd.DataFrame:
    """Every training objective × its training seeds (``training_seeds``) × (clean + every evasion attack)."""
    refuse_grid_options(preset, "an evasion", defenses, lambdas, patches)
    frames = []
    for training in preset.trainings or [preset.model.train.training]:
        for seed in preset.seeds_of(training):
            rows = run_evasion_grid(preset, training, store, device, progress, seed=seed)
            console.print(f"[bold]{preset.name}[/] {training} (seed {seed}): {len(rows)} cells")
            frames.append(rows)
    return pd.concat(frames, ignore_index=True)


GENERIC = [
    Experiment("patch-defense", "one classifier; clean and patched images × defenses × λ", _check_patch_defense,
               sweep_patch_defense),
    Experiment("evasion", "one classifier per training objective × (clean + evasion attacks)", _check_evasion,
               sweep_evasion),
]
EXPERIMENTS: Registry = Registry("experiment").register_all(GENERIC)

