"""The audit of a patch-defense preset's stored cells: every indicator that applies, per cell, written
beside the cells and read back with them (``ResultStore.load_cells``), then marked in the tables.

Per attacked cell of the preset's cached model:

* from what is stored (:mod:`patchbench.audit.verdicts`): transfer failure, non-monotonic accuracy over patch
  sizes, the attack's outcome, and incomplete optimisation and silent success on the traces of the
  run that produced the cell's patch (:mod:`patchbench.audit.runs`: found by run, not by pixels);
* on the cell's first ``n`` evaluation images with its patch pasted (:mod:`patchbench.audit.probes`, batched):
  unavailable gradients — through the defense as written for a transferred patch, through the
  gradient the defense declares (with the adaptive run's gradient options) for an adaptive cell —
  on the patch's pixels, firing when some image has none; *unstable predictions*, firing where the
  attack failed on the cell and Pintor's relative loss variation v through the defense exceeds the
  undefended pipeline's on the same images and probes by more than its threshold (probed as his
  reference code does at the attack's starting point, the clean images, on the patch region's
  pixels, once per defense × λ × region).

Not run per cell (their columns stay missing; :mod:`patchbench.audit.comparisons` has them for a caller who has the
numbers): the unconstrained attack (a half-image patch) and the random-search attack, each a new
attack per cell. ε-bounded evasion cells are cross-checked by :mod:`patchbench.runner.autoattack` instead.

Written to ``<results>/audit/cells/<preset>.parquet``, one row per run id, each with the audit's
version, the cell's kind and the remedy that fits it (:mod:`patchbench.audit.indicators`). A rerun probes only new
or changed cells and writes only when a row changed (:mod:`patchbench.audit.incremental`). Like :mod:`patchbench.runner.autoattack`
this module stands on the store, the model cache, the data and the presets, and nothing else in the
audit package imports it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from patchbench.audit import indicators
from patchbench.audit.incremental import (
    images_digest,
    input_key,
    reusable,
    stability_key,
    stored_stability,
    unchanged,
)
from patchbench.audit.indicators import (
    AUDIT_COLUMNS,
    AUDIT_GRADIENT_MISSING,
    AUDIT_IMAGES,
    AUDIT_INPUT_KEY,
    AUDIT_KIND,
    AUDIT_PROBES,
    AUDIT_REMEDY,
    AUDIT_SECONDS,
    AUDIT_STABILITY_KEY,
    AUDIT_UNAVAILABLE_GRADIENTS,
    AUDIT_UNSTABLE_EXCESS,
    AUDIT_VERSION_COLUMN,
    INDICATORS,
    cell_kind,
)
from patchbench.audit.probes import Job, PatchedImages, grad_options, gradient_probes, stability_probes
from patchbench.audit.runs import cell_runs, patch_paths
from patchbench.audit.verdicts import NOTES, cell_verdicts, mark, unstable_verdicts
from patchbench.cache.models import ensure_model
from patchbench.cache.patch_cache import PatchCache
from patchbench.config import AuditConfig, Preset
from patchbench.data import iterate, load_split
from patchbench.errors import check, is_int
from patchbench.store.results import AUDIT_DIR, ResultStore, one_precision
from patchbench.util import console, progress_bar

AUDIT_N = AuditConfig.n  # images per cell for the input-level indicators (32; a preset's audit.n)
PREFIX = "audit_"
PROBES = AuditConfig.probes  # random probes per image for unstable predictions (20; Pintor's γ = 100; ours, for cost)


def patch_files(results: Path) -> dict[str, Path]:
    """content id -> a .pt with those pixels, for every patch in the patch cache of ``results``."""
    return patch_paths(PatchCache(results).entries())


def _jobs(cells: pd.DataFrame, files: dict[str, Path]) -> list[Job]:
    att = cells[(cells["condition"] == "attacked") & cells["patch_id"].isin(list(files))]
    # a random placement puts the patch in another region per image: the input-level indicators take one (not run)
    att = att[~att["placement"].astype(str).str.startswith("random")]
    return [Job(r.run_id, r.patch_id, r.placement, r.defense, r.defense_params, None if pd.isna(r.lam) else float(r.lam),
                cell_kind(r.defense, r.attack_through) == "adaptive", grad_options(getattr(r, "attack_params", None)))
            for r in att.itertuples()]


def _indices(store: ResultStore, cells: pd.DataFrame, n: int) -> torch.Tensor:
    """The indices of the first ``n`` evaluation images of the cells (their stored predictions')."""
    first = store.load_predictions(cells["run_id"].iloc[0])
    return torch.tensor(first["index"].to_numpy()[:n], dtype=torch.long)


def probe(jobs: list[Job], files: dict[str, Path], images: torch.Tensor, labels: torch.Tensor, model, model_id: str,
          probes: int, digest: str, known: dict[str, float], progress: bool) -> tuple[dict, dict, dict]:
    """The image-level probes of ``jobs``: (run id -> images without gradient, run id -> instability
    score, run id -> its stability key); scores under a key in ``known`` are not probed again."""
    patched = PatchedImages(files, images)
    bar = progress_bar(None, progress, total=len(jobs), desc="audit: gradients, stability", unit="cell")
    missing = gradient_probes(jobs, patched, model, labels, progress=bar)
    bar.close()
    keys, todo = {}, {}
    for j in jobs:
        region = patched.get(j.patch_id, j.placement)[1].cpu().numpy().tobytes()
        keys[j.run_id] = stability_key(model_id, j.defense, j.defense_params, j.lam, region, len(labels), probes, digest)
        if keys[j.run_id] not in known:
            todo.setdefault(keys[j.run_id], j)
    scores = {**known, **stability_probes(todo, patched, model, images, labels, probes)}
    return missing, {rid: scores[k] for rid, k in keys.items()}, keys


def gradient_verdicts(cells: pd.DataFrame, out: pd.DataFrame, missing: dict[str, int], n: int) -> None:
    att = cells.set_index("run_id")
    for rid, k in missing.items():
        r = att.loc[rid]
        adaptive = cell_kind(r["defense"], r["attack_through"]) == "adaptive"
        lam = "" if pd.isna(r["lam"]) else f" λ {r['lam']:g}"
        mark(out, rid, AUDIT_UNAVAILABLE_GRADIENTS, k > 0,
             f"unavailable gradients: through {r['defense']}{lam} ({'its declared gradient' if adaptive else 'as written'}) "
             f"{k} of {n} images give no gradient on the patch's pixels")


def remedies(out: pd.DataFrame, cells: pd.DataFrame) -> None:
    """Each row's kind and the remedy that fits it, for the indicators that fire."""
    kinds = cells.set_index("run_id").loc[out.index]
    out[AUDIT_KIND] = [cell_kind(d, t) for d, t in zip(kinds["defense"], kinds["attack_through"])]
    out[AUDIT_REMEDY] = [remedy_text(row, kind) for (_, row), kind in zip(out.iterrows(), out[AUDIT_KIND])]


def remedy_text(row, kind: str) -> str:
    """What to run instead, for a cell of ``kind`` whose indicators in ``row`` fire ("" if none)."""
    return "; ".join(dict.fromkeys(i.remedy(kind)[1] for i in INDICATORS.values() if _fired(row.get(i.column))))


def audit_preset(preset: Preset, results, device: torch.device | str, n: int | None = None, probes: int | None = None,
                 progress: bool = True, require: bool = True, rerun: bool = False) -> pd.DataFrame | None:
    """Audit the stored attacked cells of ``preset`` (its cached model's): :func:`audit_cells` on them.
    ``n`` images per cell and ``probes`` per image: the preset's ``audit`` section unless given. A
    preset without patch cells is an error, or (``require=False``, the pass after a sweep) skipped."""
    n = preset.audit.n if n is None else n
    probes = preset.audit.probes if probes is None else probes
    check(is_int(n) and n >= 1, f"n must be a positive number of images, got {n!r}")
    results, device = Path(results), torch.device(device)
    store = ResultStore(results)
    cells = one_precision(store.load_cells())
    cells = cells[(cells["preset"] == preset.name)] if len(cells) else cells
    loaded = ensure_model(preset, ResultStore(results, plan_only=True), device, progress=False)
    cells = cells[cells["model_id"] == loaded.model_id] if len(cells) else cells
    if not len(cells) or not cells["patch_id"].notna().any():
        check(not require, f"no stored patch cells of preset {preset.name} with its cached model in {results}; "
              f"run `patchbench sweep --preset {preset.name}` (or `patchbench reproduce {preset.paper}`) first")
        console.print(f"audit {preset.name}: no patch cells of its own (another preset's identical cells hold them); skipped")
        return None
    d = preset.data

    def images(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        source = load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
        _, x, y = next(iter(iterate(source, idx, d.image_size, len(idx), device)))
        return x, y

    return audit_cells(cells, store, preset.name, loaded.model, loaded.model_id, images, n, probes, progress, rerun)


def audit_cells(cells: pd.DataFrame, store: ResultStore, name: str, model: torch.nn.Module, model_id: str,
                images, n: int, probes: int, progress: bool = False, rerun: bool = False) -> pd.DataFrame:
    """The per-cell audit of ``cells`` (one preset's, one model's), written under ``name`` where a row
    changed; returns every attacked cell's row (``attrs["probed"]``: the cells probed on images).
    ``images(indices) -> (images, labels)`` loads evaluation images, called only when a cell needs
    probing: cells this audit version has audited with unchanged inputs are not probed again
    (:mod:`.incremental`; ``rerun``: probe every cell)."""
    t0 = time.perf_counter()
    cells = cells.assign(**{c: None for c in ("attack_params", "attack_through", "created") if c not in cells})
    patches = PatchCache(store.root).entries()
    files = patch_paths(patches)
    out = cell_verdicts(cells, cell_runs(cells, patches))
    outcomes = out.attrs.pop("outcomes", {})  # off the frame: pandas deep-copies attrs into every column it hands out
    idx = _indices(store, cells[cells["patch_id"].notna()], n)
    digest = images_digest(idx)
    jobs = _jobs(cells, files)
    rows = cells.drop_duplicates("run_id", keep="last").set_index("run_id")
    keys = {j.run_id: input_key(r, len(idx), probes, digest, j.adaptive, j.grad_options)
            for j, r in zip(jobs, rows.loc[[j.run_id for j in jobs]].reset_index().itertuples())}
    stored = store.load_audit(name)
    kept = {} if rerun else reusable(stored, keys)
    todo = [j for j in jobs if j.run_id not in kept]
    missing = {rid: int(r[AUDIT_GRADIENT_MISSING]) for rid, r in kept.items()}
    excess = {rid: r[AUDIT_UNSTABLE_EXCESS] for rid, r in kept.items()}
    skeys = {rid: r[AUDIT_STABILITY_KEY] for rid, r in kept.items()}
    if todo:
        x, y = images(idx)
        got = probe(todo, files, x, y, model, model_id, probes, digest, {} if rerun else stored_stability(stored), progress)
        for table, new in zip((missing, excess, skeys), got):
            table.update(new)
    gradient_verdicts(cells, out, missing, len(idx))
    unstable_verdicts(cells, out, excess, outcomes, probes)
    remedies(out, cells)
    seconds = round(time.perf_counter() - t0, 2)
    out[AUDIT_VERSION_COLUMN] = indicators.AUDIT_VERSION
    out[AUDIT_GRADIENT_MISSING] = pd.array([missing.get(rid) for rid in out.index], dtype="Int64")
    out[AUDIT_UNSTABLE_EXCESS] = pd.array([excess.get(rid) for rid in out.index], dtype="Float64")
    out[AUDIT_STABILITY_KEY] = [skeys.get(rid) for rid in out.index]
    out[AUDIT_INPUT_KEY] = [keys.get(rid) for rid in out.index]
    out[AUDIT_IMAGES], out[AUDIT_PROBES] = len(idx), probes
    out[AUDIT_SECONDS] = [float(kept[rid][AUDIT_SECONDS]) if rid in kept else seconds for rid in out.index]
    out = out.reset_index()
    out.insert(1, "preset", name)
    wrote = not unchanged(out, stored)
    if wrote:
        store.write_audit(name, out)
    fired = {c: int(out[c].fillna(False).sum()) for c in AUDIT_COLUMNS if out[c].notna().any()}
    console.print(f"audit {name}: {len(out)} attacked cells, {len(todo)} probed (new or changed), "
                  f"{len(jobs) - len(todo)} kept; {int((out[NOTES] != '').sum())} flagged "
                  f"({', '.join(f'{c.removeprefix(PREFIX)} {k}' for c, k in fired.items() if k) or 'none'})"
                  f"{'' if wrote else '; nothing changed'} in {time.perf_counter() - t0:.1f} s")
    out.attrs["probed"] = len(todo)
    return out


def audit_path(results, preset: str) -> Path:
    return Path(results) / AUDIT_DIR / f"{preset}.parquet"


def explain(results, presets: list[str] | None = None) -> list[str]:
    """Per audited preset: a summary line (cells, flagged, per indicator), then one line per flagged
    cell — what it is, each firing indicator with its numbers, and what to run instead (for its kind)."""
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
            kind = row.get(AUDIT_KIND) if isinstance(row.get(AUDIT_KIND), str) else cell_kind(r.defense, r.attack_through)
            lines.append(f"  {what} [{r.run_id}]: {r.audit_notes}. Run instead: {remedy_text(row, kind)}.")
    return lines


def _fired(value) -> bool:
    return value is not None and not pd.isna(value) and bool(value)
