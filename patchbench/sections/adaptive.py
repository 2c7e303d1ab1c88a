"""The adaptive attack as a preset step: white-box LaVAN trained *through* a defense, any paper's.

A paper opts in by declaring the ``adaptive:`` preset section (``sections={"adaptive":
AdaptiveConfig}``), checking it in its ``validate`` (:func:`check_adaptive`) and running it as an
extra step of ``reproduce`` (``extra_steps=run_adaptive_section``); all three are in :mod:`patchbench.api`.

:func:`run_adaptive` trains :class:`~patchbench.attacks.adaptive_lavan.AdaptiveLaVAN` through each
named defense T — any registered defense; each declares its own gradient — at one λ, keeps a
snapshot of δ every ``record_every`` steps, caches the snapshots as patch artifacts, and
evaluates every snapshot on the preset's evaluation set through the same defense at the same λ
(and without defense). Every (defense, λ, size, step) is one stored cell with
``attack="lavan-adaptive"``, ``attack_through=<defense>`` and ``attack_step=<step>``: the
success-rate-vs-step curve is ``attack_success_rate`` against ``attack_step`` for the rows whose
``defense`` equals ``attack_through`` (:func:`curves`).

Choices (all parameters, the preset's ``adaptive:`` section):

* the attack's hyper-parameters (target, placement, margin, lr, momentum, batch size, pool,
  seed, random placement) are the preset's first ``lavan`` attack entry (else its first attack);
  ``steps`` overrides its step count. Default size: that entry's largest size.
* defenses are built by :func:`patchbench.evaluation.defense_params.resolve_defense` (the preset's entry, or
  the class defaults for a defense the preset lacks); ``defense_params`` adds/overrides parameters
  per defense name. Default λ: the defense's largest preset λ (the strongest setting of the
  sweep; :data:`patchbench.evaluation.defense_params.DEFAULT_LAMBDA` for a defense the preset lacks); ``lam``
  may be one number for all defenses or a {name: λ} dict. ``none`` trains plain LaVAN.
* ``grad_options``: the gradient choices the defenses declare (e.g. ``saliency_grad`` for WLGS:
  second-order by default; ``keep_grad`` for the LGS family: constant by default).
* the history's held-out batch: ``holdout_n`` non-target training images outside the patch's
  training pool (if the split has too few, the last ``holdout_n`` candidates, which may overlap
  it); the stored cells use the preset's evaluation set.
* ``record_every`` default: steps // 8 (9 points: step 0, 8 intermediate, the last).

Caching: each training run is one entry of the patch cache (:class:`~patchbench.cache.patch_cache.PatchCache`,
which owns where it lies), its snapshots and history stored and looked up by a key whose hash covers
everything that changes δ (attack config, size, steps, record_every, defense + params, λ, gradient
options, model id, holdout). A rerun loads the snapshots and finds every cell stored: no training,
no evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from rich.console import Console

from patchbench.attacks.adaptive_lavan import AdaptiveLaVAN, settings_entry
from patchbench.attacks.patch import Placement
from patchbench.cache.models import LoadedModel, ensure_model
from patchbench.cache.patch_cache import PatchCache, PatchKey
from patchbench.cache.patches import check_target, patch_batches, patch_candidates, selection_indices
from patchbench.config import AttackConfig, Preset, key_fields
from patchbench.data import get_dataset_info, iterate, load_split
from patchbench.defenses import DEFENSES, NoDefense, is_undefended
from patchbench.errors import PatchbenchError, check, is_int, is_number
from patchbench.evaluation.defense_params import resolve_defense
from patchbench.evaluation.engine import Condition, DefenseRun
from patchbench.evaluation.grid import evaluate_conditions
from patchbench.evaluation.stages import stage
from patchbench.store.results import ResultStore

console = Console(stderr=True)


@dataclass(frozen=True)
class AdaptiveConfig:
    """The preset's ``adaptive:`` section. Empty ``defenses`` = not part of this preset.
    ``lam`` None: each defense's largest preset λ; ``size`` None: the largest size of the
    preset's first attack; ``steps`` None: that attack's."""

    defenses: list[str] = field(default_factory=list)
    lam: float | None = None
    size: int | None = None
    steps: int | None = None
    record_every: int | None = None
    grad_options: dict[str, str] = field(default_factory=dict)


@dataclass
class AdaptiveCondition(Condition):
    """A snapshot patch as an evaluation condition. ``attack_params`` (part of the cell key) holds
    the adaptive run's identity — defense trained through, λ, step, gradient options — so two
    snapshots with identical pixels (e.g. δ saturated at 0) still get distinct cells and the
    right ``attack_step``."""

    def fields(self) -> dict[str, Any]:
        f = super().fields()
        m = self.patch.meta if self.patch is not None else {}
        f["attack_params"] = json.dumps({k: m.get(k) for k in (
            "adaptive_defense", "lam", "step", "grad_options", "run_hash")}, sort_keys=True)
        return f


def _pick_attack(preset: Preset) -> AttackConfig:
    if not preset.attacks:
        raise PatchbenchError(f"preset {preset.name} has no attack entry to take LaVAN's settings from")
    return settings_entry(preset.attacks)


def _defense_and_lam(preset: Preset, name: str, model, lam, defense_params: dict | None):
    if is_undefended(name):
        return NoDefense(), None
    defense, lambdas = resolve_defense(preset, name, model, (defense_params or {}).get(name))
    if isinstance(lam, dict):
        lam = lam.get(name)
    return defense, float(lam if lam is not None else max(lambdas))


def run_adaptive(preset: Preset, loaded: LoadedModel, store: ResultStore, device: torch.device,
                 defense_names: list[str], lam: float | dict[str, float] | None = None,
                 sizes: list[int] | None = None, steps: int | None = None, record_every: int | None = None,
                 progress: bool = True, *, grad_options: dict[str, str] | None = None,
                 defense_params: dict[str, dict] | None = None, holdout_n: int = 500,
                 include_undefended: bool = True, last_only: bool = False, columns: dict | None = None) -> pd.DataFrame:
    """Train (or load) adaptive LaVAN snapshots through each defense and evaluate them as cells.

    Returns the rows of every snapshot (``last_only``: of the last, the attack's result) × {the defense
    at λ, and no defense if ``include_undefended``}; columns as declared in :mod:`patchbench.store.columns`,
    plus ``columns`` (descriptive values every cell carries, e.g. ``training`` for a fine-tuned model).
    """
    attack = _pick_attack(preset)
    d = preset.data
    info = get_dataset_info(d.dataset)
    steps = int(steps if steps is not None else attack.steps)
    record_every = int(record_every) if record_every is not None else max(1, steps // 8)
    sizes = list(sizes) if sizes is not None else [max(attack.sizes)]
    check_target(preset, attack.target)
    place = Placement(attack.placement, attack.margin, attack.region)  # the attack entry's place, inside its mask
    for s in sizes:
        place.offset(d.image_size, s)  # a fixed place that fits, or a clear error
        place.check(d.image_size, s, "adaptive")
    built = [(name, *_defense_and_lam(preset, name, loaded.model, lam, defense_params)) for name in defense_names]

    cache = PatchCache(store.root)
    train_src = None
    pool = hold_idx = None
    frames: list[pd.DataFrame] = []
    for name, defense, lam_d in built:
        options = defense.resolve_grad_options(grad_options)
        for size in sizes:
            cfg = {"attack": {**key_fields(attack), "steps": steps}, "size": size,
                   "record_every": record_every, "defense": name, "defense_params": defense.params(),
                   "lam": lam_d, "grad_options": options, "model_id": loaded.model_id,
                   "image_size": d.image_size, "holdout_n": holdout_n}
            lam_tag = "" if lam_d is None else f"-lam{lam_d:g}"
            key = PatchKey.of(f"lavan-adaptive-{name}{lam_tag}-{size}px-t{attack.target}-{attack.placement}", cfg, run=True)
            run_hash = key.digest
            cached = cache.load_run(key)
            if cached is not None:
                snapshots, history = cached
            else:
                if train_src is None:
                    train_src = load_split(d.dataset, d.root, "train", d.image_size, verify=d.verify)
                    cand = patch_candidates(train_src, attack)
                    pool = cand[: attack.train_pool]
                    hold_idx = selection_indices(cand, attack.train_pool, holdout_n)
                atk = AdaptiveLaVAN(
                    loaded.model, size, attack.target, place, d.image_size,
                    defense=defense, lam=lam_d, grad_options=options,
                    record_every=record_every, steps=steps, lr=attack.lr, momentum=attack.momentum,
                    lr_milestones=attack.lr_milestones, lr_gamma=attack.lr_gamma, optimizer=attack.optimizer,
                    schedule=attack.schedule, random_placement=attack.random_placement, seed=attack.seed,
                    progress=progress)
                holdout = next(iter((x, y) for _, x, y in iterate(train_src, hold_idx, d.image_size, len(hold_idx), device)))
                batches = patch_batches(train_src, pool, d.image_size, attack.batch_size, device, attack.seed, d.num_workers)
                atk.fit(batches, channels=info.channels, holdout=holdout)
                del holdout, batches
                snapshots, history = atk.snapshots, atk.history
                for p in snapshots:
                    p.meta.update({"run_hash": run_hash, "model": preset.model.arch, "model_id": loaded.model_id,
                                   "dataset": d.dataset, "preset": preset.name, "batch_size": attack.batch_size,
                                   "train_pool": len(pool)})
                folder = cache.save_run(key, snapshots, history, cfg)
                last = history[-1]
                console.print(f"  lavan-adaptive through {name}{'' if lam_d is None else f' λ={lam_d:g}'} {size}px: "
                              f"held-out success {last['success_rate']:.1%} after {last['step']} steps "
                              f"({last['train_seconds']:.0f} s) -> {folder}")
                del atk
            runs = [DefenseRun(defense, [lam_d])]
            if include_undefended and not defense.is_identity:
                runs.insert(0, DefenseRun(NoDefense(), [None]))
            frames.append(evaluate_conditions(
                _no_ssim(preset), loaded, [AdaptiveCondition(p) for p in (snapshots[-1:] if last_only else snapshots)],
                runs, store, device, progress, **(columns or {})))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _no_ssim(preset: Preset) -> Preset:
    """The adaptive cells measure success only (SSIM is the clean sweep's)."""

    return replace(preset, data=replace(preset.data, ssim_n=0))


def curves(rows: pd.DataFrame) -> pd.DataFrame:
    """The success curve: success rate per step (rows) and adaptive defense (columns), the cells
    evaluated through the defense they were trained through."""
    r = rows[(rows["attack"] == AdaptiveLaVAN.name) & (rows["defense"] == rows["attack_through"])]
    return r.pivot_table(index="attack_step", columns=["attack_through", "patch_px"],
                         values="attack_success_rate", aggfunc="first")


def check_adaptive(preset: Preset) -> None:
    """Validate the ``adaptive:`` section (names, ranges) before any work."""
    ad = preset.extra.get("adaptive")
    if ad is None:
        return
    for name in ad.defenses:
        check(name in DEFENSES, f"adaptive.defenses: unknown defense {name!r}; known: {', '.join(DEFENSES)}")
        DEFENSES[name].resolve_grad_options(ad.grad_options)
    check(ad.lam is None or (is_number(ad.lam) and ad.lam >= 0), f"adaptive.lam must be >= 0, got {ad.lam!r}")
    check(ad.size is None or (is_int(ad.size) and 0 < ad.size < preset.data.image_size),
          f"adaptive.size must be an integer in 1..{preset.data.image_size - 1}, got {ad.size!r}")
    check(ad.steps is None or (is_int(ad.steps) and ad.steps >= 1), f"adaptive.steps must be an integer >= 1, got {ad.steps!r}")
    check(ad.record_every is None or (is_int(ad.record_every) and ad.record_every >= 1),
          f"adaptive.record_every must be an integer >= 1, got {ad.record_every!r}")
    check(not ad.defenses or bool(preset.attacks), "adaptive needs an attack entry (its hyper-parameters are reused)")


def run_adaptive_section(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True) -> pd.DataFrame | None:
    """The ``adaptive:`` section of a preset, if it has one (``reproduce``'s extra step)."""
    with stage("adaptive"):
        return _adaptive_section(preset, store, device, progress)


def _adaptive_section(preset: Preset, store: ResultStore, device: torch.device, progress: bool) -> pd.DataFrame | None:
    ad = preset.extra.get("adaptive")
    if ad is None or not ad.defenses:
        return None
    loaded = ensure_model(preset, store, device, progress=progress)
    rows = run_adaptive(preset, loaded, store, device, ad.defenses, lam=ad.lam,
                        sizes=None if ad.size is None else [ad.size], steps=ad.steps,
                        record_every=ad.record_every, progress=progress, grad_options=ad.grad_options)
    console.print(f"[bold]{preset.name}[/]: {len(rows)} adaptive-attack cells")
    return rows
