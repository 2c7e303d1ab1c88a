"""The audit of a patch-defense preset's stored cells: every indicator that applies, per cell, written
beside the cells and read back with them (``ResultStore.load_cells``), then marked in the tables.

Per attacked cell of the preset's cached model:

* from what is stored (:mod:`.verdicts`): transfer failure, non-monotonic accuracy over patch
  sizes, incomplete optimisation and silent success on the patch's recorded traces;
* on the cell's first ``n`` evaluation images with its patch pasted (:mod:`.gradients`,
  :mod:`.stability`): unavailable gradients — through the defense as written for a non-adaptive
  cell, through the gradient the defense declares for an adaptive one (what that attack followed)
  — on the patch's pixels, firing when some image has none; unstable predictions, firing when the
  mean of Pintor's relative loss variation v over the images exceeds its threshold, probed as his
  reference code does at the attack's starting point (the clean images), on the patch region's
  pixels, once per defense × λ × region.

Not run per cell (their columns stay missing; :mod:`patchbench.audit.comparisons` has them for a caller who has the
numbers): the unconstrained attack (a half-image patch) and the random-search attack, each a new
attack per cell. ε-bounded evasion cells are cross-checked by :mod:`.autoattack` instead.

Written to ``<results>/audit/cells/<preset>.parquet`` (atomic; one row per run id, a rerun
replaces it). Like :mod:`.autoattack` this module stands on the store, the model cache, the data
and the presets, and nothing else in the audit package imports it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from patchbench.attacks.patch import Patch
from patchbench.audit.gradients import AS_WRITTEN, DECLARED, unavailable_gradients
from patchbench.audit.indicators import AUDIT_COLUMNS, AUDIT_UNAVAILABLE_GRADIENTS, AUDIT_UNSTABLE_PREDICTIONS, INDICATORS
from patchbench.audit.stability import UNSTABLE_THRESHOLD, unstable_prediction_scores
from patchbench.audit.verdicts import NOTES, cell_verdicts, mark
from patchbench.cache.models import ensure_model
from patchbench.config import AuditConfig, Preset
from patchbench.data import iterate, load_split
from patchbench.defenses import build_defense
from patchbench.errors import check, is_int
from patchbench.store.results import AUDIT_DIR, ResultStore, one_precision
from patchbench.util import console, progress_bar

AUDIT_N = AuditConfig.n  # images per cell for the input-level indicators (32; a preset's audit.n)
PREFIX = "audit_"
PROBES = AuditConfig.probes  # random probes per image for unstable predictions (20; Pintor's γ = 100; ours, for cost)


def patch_files(results: Path) -> dict[str, Path]:
    """content id -> the patch's .pt, for every patch under ``<results>/artifacts/patches``."""
    found = {}
    for meta in sorted((Path(results) / "artifacts" / "patches").rglob("*.json")):
        try:
            cid = json.loads(meta.read_text()).get("content_id")
        except (OSError, ValueError):
            continue
        if cid and meta.with_suffix(".pt").exists():
            found[cid] = meta.with_suffix(".pt")
    return found


def _region(patch: Patch, image_size: int) -> torch.Tensor:
    top, left = patch.placement.offset(image_size, patch.size)
    m = torch.zeros(image_size, image_size, dtype=torch.bool)
    m[top:top + patch.size, left:left + patch.size] = patch.mask[0].bool()
    return m


def input_verdicts(cells: pd.DataFrame, files: dict[str, Path], model, images: torch.Tensor, labels: torch.Tensor,
                   out: pd.DataFrame, probes: int = PROBES, progress: bool = True) -> None:
    """Unavailable gradients per cell (its patch pasted), unstable predictions per defense × λ ×
    patch region (Pintor's reference code probes the attack's starting point, the clean images)."""
    att = cells[(cells["condition"] == "attacked") & cells["patch_id"].isin(list(files))]
    bar = progress_bar(None, progress, total=len(att), desc="audit: gradients, stability", unit="cell")
    gen = torch.Generator(device=images.device)
    stability: dict[tuple, float] = {}
    for pid, rows in att.groupby("patch_id"):
        patch = Patch.load(files[pid])
        if not patch.placement.fixed:  # one region per image: the input-level indicators take one (not run)
            bar.update(len(rows))
            continue
        x, mask = patch.apply(images), _region(patch, images.shape[-1])
        for r in rows.itertuples():
            params = json.loads(r.defense_params) if isinstance(r.defense_params, str) else {}
            defense = build_defense(r.defense, params, model)
            lam = None if pd.isna(r.lam) else float(r.lam)
            adaptive = isinstance(r.attack_through, str) and r.attack_through == r.defense
            path = DECLARED if adaptive else AS_WRITTEN
            none = unavailable_gradients(model, defense, x, labels, lam=lam, mask=mask, path=path)
            mark(out, r.run_id, AUDIT_UNAVAILABLE_GRADIENTS, bool(none.any()),
                 f"unavailable gradients: through {r.defense}{'' if lam is None else f' λ {lam:g}'} "
                 f"({'its declared gradient' if adaptive else 'as written'}) {int(none.sum())} of {len(none)} images give "
                 "no gradient on the patch's pixels")
            key = (r.defense, r.defense_params, lam, tuple(mask.nonzero()[[0, -1]].flatten().tolist()))
            if key not in stability:
                gen.manual_seed(0)
                stability[key] = float(unstable_prediction_scores(model, defense, images, labels, n=probes, lam=lam,
                                                                  mask=mask, generator=gen).mean())
            v = stability[key]
            mark(out, r.run_id, AUDIT_UNSTABLE_PREDICTIONS, v > UNSTABLE_THRESHOLD,
                 f"unstable predictions: through {r.defense}{'' if lam is None else f' λ {lam:g}'} the loss moves by "
                 f"{v:.0%} on average under {probes} tiny random changes of the patch region's pixels (threshold "
                 f"{UNSTABLE_THRESHOLD:.0%}): average the loss over the defense's noise (EOT)")
            bar.update(1)
    bar.close()


def audit_preset(preset: Preset, results, device: torch.device | str, n: int | None = None, probes: int | None = None,
                 progress: bool = True, require: bool = True) -> pd.DataFrame | None:
    """Audit the stored attacked cells of ``preset`` (its cached model's); returns and writes the verdicts.
    ``n`` images per cell and ``probes`` per image: the preset's ``audit`` section unless given.
    A preset without patch cells is an error, or (``require=False``, the pass after a sweep) skipped."""
    n = preset.audit.n if n is None else n
    probes = preset.audit.probes if probes is None else probes
    check(is_int(n) and n >= 1, f"n must be a positive number of images, got {n!r}")
    results, device = Path(results), torch.device(device)
    store = ResultStore(results)
    cells = one_precision(store.load_cells())
    cells = cells[(cells["preset"] == preset.name)] if len(cells) else cells
    loaded = ensure_model(preset, ResultStore(results, plan_only=True), device, progress=False)
    cells = cells[cells["model_id"] == loaded.model_id] if len(cells) else cells
    patch_cells = cells[cells["patch_id"].notna()] if len(cells) else cells
    if not len(patch_cells):
        check(not require, f"no stored patch cells of preset {preset.name} with its cached model in {results}; "
              f"run `patchbench sweep --preset {preset.name}` (or `patchbench reproduce {preset.paper}`) first")
        console.print(f"audit {preset.name}: no patch cells of its own (another preset's identical cells hold them); skipped")
        return None
    t0 = time.perf_counter()
    files = patch_files(results)
    metas = {cid: json.loads(p.with_suffix(".json").read_text()) for cid, p in files.items()}
    out = cell_verdicts(cells, metas)
    first = store.load_predictions(patch_cells["run_id"].iloc[0])
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
    idx = torch.tensor(first["index"].to_numpy()[:n], dtype=torch.long)
    _, images, labels = next(iter(iterate(source, idx, d.image_size, len(idx), device)))
    input_verdicts(cells, files, loaded.model, images, labels, out, probes, progress)
    out = out.reset_index()
    out.insert(1, "preset", preset.name)
    out["audit_n"], out["audit_probes"] = len(idx), probes
    out["audit_seconds"] = round(time.perf_counter() - t0, 2)
    store.write_audit(preset.name, out)
    fired = {c: int(out[c].fillna(False).sum()) for c in AUDIT_COLUMNS if out[c].notna().any()}
    console.print(f"audit {preset.name}: {len(out)} attacked cells, {int((out[NOTES] != '').sum())} flagged "
                  f"({', '.join(f'{c.removeprefix(PREFIX)} {k}' for c, k in fired.items() if k) or 'none'}) "
                  f"in {time.perf_counter() - t0:.0f} s")
    return out


def audit_path(results, preset: str) -> Path:
    return Path(results) / AUDIT_DIR / f"{preset}.parquet"


def explain(results, presets: list[str] | None = None) -> list[str]:
    """Per audited preset: a summary line (cells, flagged, per indicator), then one line per flagged
    cell — what it is, each firing indicator with its numbers, and what to run instead."""

    cells = ResultStore(results, read_only=True).load_cells()
    have = [c for c in AUDIT_COLUMNS if c in cells]
    check(bool(have) and cells[have].notna().any().any(),
          f"no audited cells in {results}; run `patchbench audit PRESET --results {results}` (or `patchbench reproduce`) first")
    audited = cells[cells[have].notna().any(axis=1)]
    names = presets or list(dict.fromkeys(audited["preset"]))
    lines = []
    for name in names:
        mine = audited[audited["preset"] == name]
        check(len(mine) > 0, f"preset {name} has no audited cells in {results}; run `patchbench audit {name} --results {results}`")
        flagged = mine[mine[NOTES].fillna("") != ""]
        counts = ", ".join(f"{i.name.replace('_', ' ')} {int(mine[i.column].fillna(False).sum())}"
                           for i in INDICATORS.values() if i.column in mine and mine[i.column].fillna(False).any())
        lines.append(f"{name}: {len(mine)} attacked cells audited, {len(flagged)} flagged" + (f" ({counts})" if counts else ""))
        for r in flagged.sort_values(["attack", "defense", "lam", "patch_px", "attack_seed"], na_position="first").itertuples():
            what = (f"{r.attack} {r.patch_px:g}px seed {r.attack_seed}" if not pd.isna(r.patch_px) else r.attack) + \
                   f" · {r.defense}{'' if pd.isna(r.lam) else f' λ {r.lam:g}'} · {100 * r.accuracy:.1f} %"
            row = r._asdict()
            remedies = dict.fromkeys(i.run_instead for i in INDICATORS.values() if _fired(row.get(i.column)))
            lines.append(f"  {what} [{r.run_id}]: {r.audit_notes}. Run instead: {'; '.join(remedies)}.")
    return lines


def _fired(value) -> bool:
    return value is not None and not pd.isna(value) and bool(value)
