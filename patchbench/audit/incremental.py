"""A rerun recomputes nothing: which attacked cells the per-cell audit must probe, and which of its
stored verdicts it keeps.

Verdict rows are keyed by the cell's run id and the audit's own version (:data:`~patchbench.audit.indicators.AUDIT_VERSION`,
stored in each row as ``audit_version``). The two kinds of verdict follow two rules:

* read from stored data (transfer failure, non-monotonic, the traces, the attack's outcome, and
  from it whether *unstable predictions* fires): recomputed on every audit from the cells and the
  patches' metas — pandas over one preset's cells, well under a second — so they follow each new
  or changed neighbour (a new undefended cell, another seed, a new λ) without bookkeeping;
* probed on images (the gradient count and the instability score, the audit's cost): a cell's
  probes are kept while its *input key* is unchanged — a hash of the audit version, the model, the
  patch (content id, placement), the defense with its parameters and λ, the gradient path and
  options, ``n``, ``probes``, the evaluation images' indices and the cell's own ``created`` stamp (a
  cell recomputed under the same run id is probed again). The instability score is also shared
  across cells by its own key (model × defense × parameters × λ × patch region × images × probes),
  so a new patch seed at an audited size and λ costs no new probe.

An audit whose rows all come out as stored writes nothing.
"""

from __future__ import annotations

import pandas as pd

from patchbench.audit import indicators
from patchbench.audit.indicators import (
    AUDIT_INPUT_KEY,
    AUDIT_SECONDS,
    AUDIT_STABILITY_KEY,
    AUDIT_UNSTABLE_EXCESS,
    AUDIT_VERSION_COLUMN,
)
from patchbench.util import stable_hash


def _plain(v):
    """A cell value as JSON would hold it (NaN/NA -> None, numpy scalars -> Python)."""
    if v is None or (not isinstance(v, (str, bytes)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def images_digest(indices) -> str:
    """The evaluation images an audit probes, by their indices in the split."""
    return stable_hash([int(i) for i in indices], 16)


def input_key(row, n: int, probes: int, images: str, adaptive: bool, grad_options: str) -> str:
    """What a cell's image-level probes read (module docstring); ``row`` a cell (itertuples row)."""
    return stable_hash({"version": indicators.AUDIT_VERSION, "model_id": row.model_id, "patch_id": row.patch_id,
                        "placement": _plain(row.placement), "defense": row.defense,
                        "defense_params": _plain(row.defense_params), "lam": _plain(row.lam),
                        "adaptive": adaptive, "grad_options": grad_options if adaptive else None,
                        "n": n, "probes": probes, "images": images, "created": _plain(getattr(row, "created", None))}, 20)


def stability_key(model_id: str, defense: str, defense_params, lam, region: bytes, n: int, probes: int,
                  images: str) -> str:
    """What an instability score read: the same for every cell of one defense × λ × patch region."""
    return stable_hash({"version": indicators.AUDIT_VERSION, "model_id": model_id, "defense": defense,
                        "defense_params": _plain(defense_params), "lam": _plain(lam),
                        "region": stable_hash(region.hex(), 16), "n": n, "probes": probes, "images": images}, 20)


def current(stored: pd.DataFrame) -> pd.DataFrame:
    """The stored rows this audit version wrote (older versions' rows are recomputed)."""
    if stored.empty or AUDIT_VERSION_COLUMN not in stored:
        return stored.iloc[0:0]
    return stored[stored[AUDIT_VERSION_COLUMN].astype("Float64") == indicators.AUDIT_VERSION]


def reusable(stored: pd.DataFrame, keys: dict[str, str]) -> dict[str, pd.Series]:
    """run id -> its stored row, for the cells whose input key is the stored one (this version's)."""
    rows = current(stored)
    if rows.empty or AUDIT_INPUT_KEY not in rows:
        return {}
    rows = rows.drop_duplicates("run_id", keep="last").set_index("run_id")
    return {rid: rows.loc[rid] for rid, key in keys.items() if rid in rows.index and rows.at[rid, AUDIT_INPUT_KEY] == key}


def stored_stability(stored: pd.DataFrame) -> dict[str, float]:
    """stability key -> the instability score stored with it (this version's rows)."""
    rows = current(stored)
    if rows.empty or AUDIT_STABILITY_KEY not in rows:
        return {}
    rows = rows.dropna(subset=[AUDIT_STABILITY_KEY, AUDIT_UNSTABLE_EXCESS])
    return dict(zip(rows[AUDIT_STABILITY_KEY], rows[AUDIT_UNSTABLE_EXCESS].astype(float)))


def unchanged(new: pd.DataFrame, stored: pd.DataFrame) -> bool:
    """Every row of ``new`` is stored as it is (the seconds aside): nothing to write."""
    if stored.empty or not set(new["run_id"]) <= set(stored["run_id"]):
        return False
    cols = [c for c in new.columns if c != AUDIT_SECONDS]
    if not set(cols) <= set(stored.columns):
        return False
    old = stored.drop_duplicates("run_id", keep="last").set_index("run_id").loc[new["run_id"], [c for c in cols if c != "run_id"]]
    mine = new.set_index("run_id")[[c for c in cols if c != "run_id"]]
    return all(_same_column(mine[c], old[c]) for c in mine.columns)


def _same_column(a: pd.Series, b: pd.Series) -> bool:
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    both_missing = a.isna().to_numpy() & b.isna().to_numpy()
    same = [bool(m) or (not pd.isna(x) and not pd.isna(y) and (x == y or _close(x, y)))
            for m, x, y in zip(both_missing, a, b)]
    return all(same)


def _close(x, y) -> bool:
    try:
        return abs(float(x) - float(y)) <= 1e-12 * max(1.0, abs(float(x)))
    except (TypeError, ValueError):
        return False
