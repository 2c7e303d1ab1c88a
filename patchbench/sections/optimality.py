"""How strong each patch attack is, as a preset section any paper can declare: ``patch-optimality:``.

A paper opts in as for the adaptive attack: ``sections={"patch-optimality": OptimalityConfig}``, calls
:func:`check_optimality` from its ``validate`` and :func:`run_optimality_section` from its
``extra_steps`` (after the sweep and the adaptive section: it reuses their cached model, patches,
adaptive runs and cells), and shows the table :func:`~patchbench.sections.optimality_table.build_optimality`
(all in :mod:`patchbench.api`).

For the preset's model, undefended and through each named defense at one λ, every patch attack over a
grid of patch sides (``sizes``, default every size of the preset's attacks), each a universal patch:

* the transfer attacks: each of the preset's patch attack entries (LaVAN, Adversarial Patch, ...)
  trained on the undefended model at every size with one seed (``seed``), and ``patch_rs`` (the
  gradient-free random search, :mod:`patchbench.attacks.patch_rs`) built from the preset's LaVAN entry,
  so it spends LaVAN's queries; each evaluated undefended and through every defense;
* ``lavan-adaptive``: LaVAN trained through each defense at every size (:func:`patchbench.sections.adaptive.run_adaptive`
  with the preset's ``adaptive:`` settings, so the adaptive section's own run is reused at its size;
  only the last step is evaluated at the other sizes);
* ``unbounded: true`` (the default): every attack once more with a patch of half the image
  (:func:`patchbench.audit.comparisons.half_image_side`, 45 px at 64 px), Pintor et al.'s unconstrained
  attack; it is not part of the curves.

Cells the sweep already stored are reused (same run id); the cells this step adds carry the preset
name ``<preset>+patch-optimality`` so that the paper's own tables (which select by preset) keep
showing only the preset's grid. Then, from the stored per-image predictions, the step writes two
audit verdicts (``<results>/audit/cells/<preset>.optimality.parquet``, joined by
``ResultStore.load_cells``): *unconstrained failure* on every cell of an attack whose half-image patch
still misses more than 5 % of the images it attacks (correctly classified; for a targeted patch, those
of the other classes: its own class is no success to reach), and *random search beats the
gradient attack* on each LaVAN cell that the equal-query Patch-RS beats beyond the two intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from patchbench.sections.adaptive import run_adaptive
from patchbench.attacks import ATTACKS, PatchAttack
from patchbench.attacks.adaptive_lavan import settings_entry
from patchbench.audit.comparisons import half_image_side
from patchbench.cache.models import ensure_model
from patchbench.cache.patches import check_target, train_patch
from patchbench.config import AttackConfig, Preset
from patchbench.evaluation.defense_params import resolve_defense
from patchbench.defenses import DEFENSES, NoDefense, is_undefended
from patchbench.evaluation.engine import Condition, DefenseRun
from patchbench.errors import check, is_int, is_number
from patchbench.evaluation.grid import evaluate_conditions
from patchbench.store.results import ResultStore
from patchbench.sections.optimality_cells import ADAPTIVE, RANDOM_SEARCH, SECTION, write_manifest, write_verdicts
from patchbench.evaluation.stages import stage
from patchbench.util import console


@dataclass(frozen=True)
class OptimalityConfig:
    """The preset's ``patch-optimality:`` section (see the module docstring). Empty ``sizes``: every
    patch size of the preset's attacks; empty ``attacks``: the preset's patch attacks, ``patch_rs`` and
    ``lavan-adaptive``; empty ``defenses``: the ``adaptive:`` section's; ``lam`` None: the adaptive
    section's λ, else each defense's largest preset λ; ``presets``: other presets (one model each) whose
    sections are ranked with this one in its table (the overall rank is the mean over every model and
    defense); ``adaptive_steps``: the adaptive attack's steps where the preset has no ``adaptive:`` section."""

    sizes: list[int] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    defenses: list[str] = field(default_factory=list)
    lam: float | None = None
    seed: int = 0
    unbounded: bool = True
    presets: list[str] = field(default_factory=list)
    adaptive_steps: int | None = None


def section_preset(name: str) -> str:
    """The ``preset`` of the cells this step adds for preset ``name``."""
    return f"{name}+{SECTION}"


def grid_sizes(preset: Preset, cfg: OptimalityConfig) -> list[int]:
    """The curves' patch sides, increasing (the half-image side is not one of them)."""
    return sorted(set(cfg.sizes or [s for a in preset.attacks for s in a.sizes]))


def unbounded_side(preset: Preset, cfg: OptimalityConfig) -> int | None:
    return half_image_side(preset.data.image_size) if cfg.unbounded else None


def attack_names(preset: Preset, cfg: OptimalityConfig) -> list[str]:
    names = cfg.attacks or [*dict.fromkeys(a.name for a in preset.attacks), RANDOM_SEARCH, ADAPTIVE]
    return list(dict.fromkeys(names))


def defense_names(preset: Preset, cfg: OptimalityConfig) -> list[str]:
    ad = preset.extra.get("adaptive")
    names = cfg.defenses or (list(ad.defenses) if ad is not None else [])
    return [n for n in dict.fromkeys(names) if not is_undefended(n)]


def lavan_entry(preset: Preset) -> AttackConfig:
    """The entry LaVAN-like attacks take their settings from: the first ``lavan`` entry, else the first."""
    return settings_entry(preset.attacks)


def transfer_entry(preset: Preset, cfg: OptimalityConfig, name: str) -> AttackConfig:
    """The entry of transfer attack ``name`` at the section's seed: the preset's own, else (``patch_rs``,
    another registered patch attack) the LaVAN entry renamed — LaVAN's settings, so its queries."""
    own = next((a for a in preset.attacks if a.name == name), None)
    return replace(own or replace(lavan_entry(preset), name=name), seed=cfg.seed, seeds=[])


def defense_lambda(preset: Preset, cfg: OptimalityConfig, name: str, model=None):
    """(the built defense ``name``, its λ in this section: None for a defense without one)."""
    defense, lambdas = resolve_defense(preset, name, model)
    if not defense.uses_lambda:
        return defense, None
    ad = preset.extra.get("adaptive")
    lam = cfg.lam if cfg.lam is not None else (ad.lam if ad is not None and ad.lam is not None else max(lambdas))
    return defense, float(lam)


def check_optimality(preset: Preset) -> None:
    """Validate the ``patch-optimality:`` section (names, sizes, ranges) before any work."""
    cfg = preset.extra.get(SECTION)
    if cfg is None:
        return
    n = preset.data.image_size
    where = SECTION
    check(bool(preset.attacks), f"{where} needs the preset's patch attacks (their entries' settings)")
    check(isinstance(cfg.sizes, list) and all(is_int(s) and 0 < s < n for s in cfg.sizes),
          f"{where}.sizes must be integers in 1..{n - 1}, got {cfg.sizes!r}")
    sizes = grid_sizes(preset, cfg)
    check(bool(sizes), f"{where} needs sizes, or attacks whose sizes it takes")
    patch_attacks = [k for k, c in ATTACKS.items() if issubclass(c, PatchAttack) and k != ADAPTIVE]
    for name in attack_names(preset, cfg):
        check(name == ADAPTIVE or name in patch_attacks,
              f"{where}.attacks: unknown patch attack {name!r}; known: {', '.join(patch_attacks + [ADAPTIVE])}")
        if name != ADAPTIVE:
            entry = transfer_entry(preset, cfg, name)
            for s in sizes + ([unbounded_side(preset, cfg)] if cfg.unbounded else []):
                ATTACKS[name].check_config(replace(entry, sizes=[s]), n, where=f"{where} attack {name} at {s} px")
            check_target(preset, entry.target)
    for name in defense_names(preset, cfg):
        check(name in DEFENSES, f"{where}.defenses: unknown defense {name!r}; known: {', '.join(DEFENSES)}")
    check(cfg.lam is None or (is_number(cfg.lam) and cfg.lam >= 0), f"{where}.lam must be a number >= 0, got {cfg.lam!r}")
    check(is_int(cfg.seed), f"{where}.seed must be an integer, got {cfg.seed!r}")
    check(isinstance(cfg.unbounded, bool), f"{where}.unbounded must be true or false, got {cfg.unbounded!r}")
    check(isinstance(cfg.presets, list) and all(isinstance(p, str) for p in cfg.presets),
          f"{where}.presets must be a list of preset names, got {cfg.presets!r}")
    check(cfg.adaptive_steps is None or (is_int(cfg.adaptive_steps) and cfg.adaptive_steps >= 1),
          f"{where}.adaptive_steps must be an integer >= 1, got {cfg.adaptive_steps!r}")


def run_optimality_section(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True) -> pd.DataFrame | None:
    """The ``patch-optimality:`` section of a preset, if it has one (``reproduce``'s extra step)."""
    with stage("optimality"):
        return _optimality_section(preset, store, device, progress)


def _optimality_section(preset: Preset, store: ResultStore, device: torch.device, progress: bool) -> pd.DataFrame | None:
    cfg = preset.extra.get(SECTION)
    if cfg is None:
        return None
    loaded = ensure_model(preset, store, device, progress=progress)
    mine = replace(preset, name=section_preset(preset.name), data=replace(preset.data, ssim_n=0))
    sizes = grid_sizes(preset, cfg) + ([unbounded_side(preset, cfg)] if cfg.unbounded else [])
    built = {name: defense_lambda(preset, cfg, name, loaded.model) for name in defense_names(preset, cfg)}
    runs = [DefenseRun(NoDefense(), [None])] + [DefenseRun(d, [lam]) for d, lam in built.values()]
    names = attack_names(preset, cfg)
    patches = [train_patch(preset, transfer_entry(preset, cfg, name), s, loaded, store, device, progress=progress)
               for name in names if name != ADAPTIVE for s in sizes]
    frames = [evaluate_conditions(mine, loaded, [Condition(None)] + [Condition(p) for p in patches], runs, store, device,
                                  progress)]
    if ADAPTIVE in names and built:
        frames += _adaptive(preset, mine, cfg, loaded, store, device, sizes, built, progress)
    rows = pd.concat(frames, ignore_index=True)
    if store.shard is not None:  # a shard holds part of the cells: the last one's `reproduce` scores them all
        return rows
    manifest = write_manifest(store, preset.name, rows, grid_sizes(preset, cfg), unbounded_side(preset, cfg))
    console.print(f"[bold]{preset.name}[/]: {len(manifest)} {SECTION} cells ({len(rows)} evaluated or reused)")
    write_verdicts(preset.name, store)
    return manifest


def _adaptive(preset, mine, cfg, loaded, store, device, sizes, built, progress) -> list[pd.DataFrame]:
    """LaVAN through each defense at every size: the adaptive section's settings (its run reused at its
    size, every snapshot evaluated there as that section does), elsewhere only the last step evaluated."""
    ad = preset.extra.get("adaptive")
    if ad is not None:  # the adaptive section's settings, so that its run is this one at its size
        steps, record_every, grad_options = ad.steps, ad.record_every, ad.grad_options
    else:  # no curve to draw: record step 0 and the last
        steps = cfg.adaptive_steps or lavan_entry(preset).steps
        record_every, grad_options = steps, None
    own = (ad.size if ad.size is not None else max(lavan_entry(preset).sizes)) if ad is not None and ad.defenses else None
    lam = {name: lam for name, (_, lam) in built.items()}
    frames = []
    for group, last_only in (([s for s in sizes if s == own], False), ([s for s in sizes if s != own], True)):
        if group:
            frames.append(run_adaptive(mine, loaded, store, device, list(built), lam=lam, sizes=group, steps=steps,
                                       record_every=record_every, progress=progress, grad_options=grad_options,
                                       include_undefended=False, last_only=last_only))
    return frames
