"""From stored cells to a claim's paired per-image outcomes: the cells each side reads, which cell of one
side pairs with which of the other, and the per-image outcomes of each pair on the images both saw.

Each failure is a one-line :class:`~patchbench.errors.PatchbenchError` saying what is missing; the claim is
then *not computed* (:mod:`patchbench.reporting.claim_checks` adds the command that computes it).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from patchbench.claims.spec import TRAIN_SEED, Cells, Pick
from patchbench.errors import PatchbenchError


def column_values(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]``; ``"defense_params.patch_px"`` reads one field of a JSON column (missing where absent)."""
    name, _, field = column.partition(".")
    if name not in df:
        raise PatchbenchError(f"no stored cell has a {name!r} column")
    if not field:
        return df[name]
    parsed = df[name].map(lambda v: json.loads(v).get(field) if isinstance(v, str) and v.startswith("{") else None)
    return parsed.astype(object)


def matches(df: pd.DataFrame, column: str, value) -> pd.Series:
    """Rows of ``df`` whose ``column`` (or JSON field, ``column.field``) equals ``value`` (None/NaN: missing;
    numbers: within 1e-6)."""
    col = column_values(df, column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return col.isna()
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (pd.to_numeric(col, errors="coerce") - float(value)).abs() < 1e-6
    return col == value


def side_cells(cells: pd.DataFrame, side: Cells, preset) -> pd.DataFrame:
    """The cells of ``cells`` (one preset's) that ``side`` reads: its literal filters, then its picks in order
    (each deciding on the cells the filters before it left), the newest model among them."""
    df = cells
    literal = {c: v for c, v in side.where.items() if not isinstance(v, Pick)}
    for column, value in literal.items():
        df = df[matches(df, column, value)]
    for column, pick in ((c, v) for c, v in side.where.items() if isinstance(v, Pick)):
        if df.empty:
            break
        try:
            value = pick(preset, df)
        except (KeyError, AttributeError, TypeError, ValueError) as exc:  # a plugin's pick that cannot decide
            raise PatchbenchError(f"{pick.text}: cannot be read from {preset.name} ({type(exc).__name__}: {exc})") from None
        df = df[matches(df, column, value)]
    if df.empty:
        raise PatchbenchError(f"no stored cell of {preset.name} for {side.label}")
    # the newest model per training seed (``train_seed``, evasion presets with several seeds per objective): a
    # retrained model's cells replace the older model's, the seeds' models stay side by side as replicates
    df = df.sort_values("created")
    seed = df[TRAIN_SEED].astype(object).where(df[TRAIN_SEED].notna(), "-") if TRAIN_SEED in df else pd.Series("-", index=df.index)
    newest = df.groupby(seed.astype(str), sort=False)["model_id"].transform("last")
    return df[df["model_id"] == newest]


# what a cell measures: two cells of one side with the same pair key must not differ in these (a side whose filters
# leave, say, the undefended and the LGS cell of one N-pixel region is a mistake of the claim, not a replicate)
MEANING = ("condition", "attack", "attack_label", "patch_px", "target", "defense", "lam", "training", "method",
           "patch_source", "attack_through", "attack_step")


def _newest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest cell per pair key (no key: the newest cell); a one-line error when one key holds cells that
    measure different things."""
    by = [k for k in keys] or [pd.Series(0, index=df.index)]
    cols = [c for c in MEANING if c in df]
    for _, group in df.groupby(by, dropna=False, sort=False):
        differ = [c for c in cols if group[c].astype(str).nunique(dropna=False) > 1]
        if differ:
            raise PatchbenchError(f"the side's filters leave cells that differ in {', '.join(differ)} for one "
                                  f"{' / '.join(keys) or 'cell'}: the claim must name them")
    df = df.sort_values("created")
    return df.drop_duplicates(keys, keep="last") if keys else df.tail(1)


def pair_cells(a: pd.DataFrame, b: pd.DataFrame, pair_by: tuple) -> list[tuple[pd.Series, pd.Series]]:
    """(cell of a, cell of b) pairs: the cells with equal ``pair_by`` values (a missing value equals a missing
    value); a side with a single cell pairs with every cell of the other (a clean cell with each patch seed's
    attacked cell)."""
    keys = [k for k in pair_by if k in a and k in b]
    a, b = _newest(a, keys), _newest(b, keys)

    def key(row):
        return tuple(None if pd.isna(row[k]) else str(row[k]) for k in keys)

    def order(pair):  # the pairs in the order of their values, not of the cells' creation: the bootstrap resamples
        return tuple("" if v is None else v for v in key(pair[0]) + key(pair[1]))  # replicates by position
    if len(a) == 1 or len(b) == 1:
        return sorted([(ra, rb) for _, ra in a.iterrows() for _, rb in b.iterrows()], key=order)
    of_b = {key(rb): rb for _, rb in b.iterrows()}
    pairs = [(ra, of_b[key(ra)]) for _, ra in a.iterrows() if key(ra) in of_b]
    if not pairs:
        raise PatchbenchError(f"no cell of one side has the {', '.join(keys)} of a cell of the other")
    return sorted(pairs, key=order)


def outcomes(predictions: pd.DataFrame, metric: str, run_id: str) -> pd.Series:
    """Per-image outcome of one cell, indexed by dataset index: 0/1 for ``correct`` and ``certified``, the
    cross-entropy for ``loss``."""
    if not {"index", "label", "pred"} <= set(predictions.columns):
        raise PatchbenchError(f"the predictions of cell {run_id} have no index, label and pred columns")
    p = predictions.drop_duplicates("index").set_index("index")
    if metric == "correct":
        return (p["pred"] == p["label"]).astype(float)
    if metric not in p:
        what = "certificate (a certifying defense's clean cell)" if metric == "certified" else "per-image loss"
        raise PatchbenchError(f"the predictions of cell {run_id} hold no {what}"
                              + ("; cells stored before patchbench kept per-image losses need a fresh results directory"
                                 if metric == "loss" else ""))
    return p[metric].astype(float)


def paired_outcomes(load, pairs, metric_a: str, metric_b: str) -> tuple[np.ndarray, np.ndarray]:
    """(A, B): R × n outcomes of the R pairs on the n images every cell of them saw, in one order.
    ``load(run_id)`` returns a cell's predictions (``ResultStore.load_predictions``)."""
    series = []
    for ra, rb in pairs:
        try:
            series.append((outcomes(load(ra["run_id"]), metric_a, ra["run_id"]), outcomes(load(rb["run_id"]), metric_b, rb["run_id"])))
        except FileNotFoundError as exc:
            raise PatchbenchError(f"a cell's predictions are missing ({exc.filename})") from None
    common = series[0][0].index
    for sa, sb in series:
        common = common.intersection(sa.index).intersection(sb.index)
    if len(common) == 0:
        raise PatchbenchError("the two sides share no evaluation image")
    common = common.sort_values()
    return (np.stack([sa.loc[common].to_numpy() for sa, _ in series]),
            np.stack([sb.loc[common].to_numpy() for _, sb in series]))
