"""Which training run produced a cell's patch, so that a cell is judged by its own run's traces.

A cell names its patch by content (``patch_id``, a hash of the pixels, part of the cell's identity).
Two runs can produce the same pixels: every adaptive run of a seed starts from the same seeded
patch, so the step-0 snapshots of its runs through LGS, SLGS and WLGS are one content id, and a run
whose patch never moved ends on that content id too. Found by its pixels, a trace is then another
run's (one run's flat trace would flag another run's cells). Here a cell is matched to the
patch files whose *run* agrees with the cell's own columns:

* an adaptive snapshot (its ``attack_params`` hold the run's ``run_hash`` and the ``step``): the file
  of that run and step. Only a run's last snapshot carries the run's traces, so the earlier snapshots'
  cells are not judged by them;
* any other patch: the files with the cell's content id whose meta agrees with the cell on model
  id, attack, size, target, placement and seed (each compared where the meta records it: a user's
  patch file may record none of them).

Where the matching files disagree on the traces (two runs, one cell), the cell's run cannot be told
and its traces are not read — the verdict stays missing rather than borrowed.

The stored patches come from the patch cache (:meth:`patchbench.cache.patch_cache.PatchCache.entries`):
this module matches, it does not look for files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

IDENTITY = ("model_id", "attack", "patch_px", "target", "placement", "attack_seed", "attack_params")
TRACE_KEYS = ("loss_trace", "hit_trace", "batch_size", "train_success_rate", "success_n", "random_placement")


def _adaptive_run(attack_params) -> tuple[str, int] | None:
    """(run_hash, step) of an adaptive snapshot's cell, from its ``attack_params``."""
    if not isinstance(attack_params, str):
        return None
    try:
        p = json.loads(attack_params)
    except ValueError:
        return None
    if not isinstance(p, dict) or not p.get("run_hash") or p.get("step") is None:
        return None
    return str(p["run_hash"]), int(p["step"])


def _placement(meta: dict) -> str | None:
    return None if meta.get("placement") is None else f"{meta['placement']}+{int(meta.get('margin', 0))}"


def _agrees(row, meta: dict) -> bool:
    """The meta's recorded run identity agrees with the cell's columns (unrecorded fields agree)."""
    pairs = (("model_id", row.model_id, meta.get("model_id")), ("attack", row.attack, meta.get("attack")),
             ("size", row.patch_px, meta.get("size_px")), ("target", row.target, meta.get("target")),
             ("placement", row.placement, _placement(meta)), ("seed", row.attack_seed, meta.get("seed")))
    for _, cell_value, meta_value in pairs:
        if meta_value is None or cell_value is None or pd.isna(cell_value):
            continue
        if isinstance(meta_value, (int, float)) and not isinstance(meta_value, bool):
            if float(cell_value) != float(meta_value):
                return False
        elif str(cell_value) != str(meta_value):
            return False
    return True


def traces_of(meta: dict) -> dict:
    """What of a patch's meta the trace indicators read."""
    return {k: meta.get(k) for k in TRACE_KEYS}


def cell_runs(cells: pd.DataFrame, patches: list[tuple[Path, dict]]) -> dict[str, dict | None]:
    """run id of each attacked patch cell -> its run's patch meta (the traces a cell is judged by),
    or None where no file or more than one run with different traces matches (module docstring)."""
    by_content: dict[str, list[dict]] = {}
    by_run: dict[tuple[str, int], list[dict]] = {}
    for _, meta in patches:
        by_content.setdefault(meta["content_id"], []).append(meta)
        if meta.get("run_hash") and meta.get("step") is not None:
            by_run.setdefault((str(meta["run_hash"]), int(meta["step"])), []).append(meta)
    out: dict[str, dict | None] = {}
    att = cells[(cells["condition"] == "attacked") & cells["patch_id"].notna()]
    att = att.assign(**{c: None for c in IDENTITY if c not in att})
    for row in att.itertuples():
        run = _adaptive_run(getattr(row, "attack_params", None))
        if run is not None:
            found = [m for m in by_run.get(run, []) if m["content_id"] == row.patch_id]
        else:
            found = [m for m in by_content.get(row.patch_id, []) if not m.get("run_hash") and _agrees(row, m)]
        distinct = {json.dumps(traces_of(m), sort_keys=True, default=str) for m in found}
        out[row.run_id] = found[0] if len(distinct) == 1 else None
    return out


def patch_paths(patches: list[tuple[Path, dict]]) -> dict[str, Path]:
    """content id -> one .pt with those pixels (for the pixels only: any file with them will do)."""
    return {meta["content_id"]: pt for pt, meta in patches}
