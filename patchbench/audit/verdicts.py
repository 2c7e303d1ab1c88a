"""Per-cell verdicts of a patch-defense grid read from what is stored: the cells' accuracies and
intervals, and the traces each patch's attack recorded (its meta). No model, no images.

One row per attacked cell (``run_id``): each indicator's column (:data:`AUDIT_COLUMNS`) True where
it fires, False where it was checked and holds, missing (``pd.NA``) where it does not apply or was
not run, and ``audit_notes``: one sentence per firing indicator, with the numbers behind it.

How the cell-level indicators of :mod:`.comparisons` read a patch grid (ours; each a parameter below):

* *transfer failure* (Pintor et al. 2022): a non-adaptive defended cell evaluates a patch optimised
  on the undefended model (the surrogate) through the defense (the target). Pintor's indicator
  fires on an example that fools the surrogate but not the target; per cell, where the patch's
  accuracy through the defense exceeds its accuracy on the undefended model it was trained on (the
  cell with the same ``patch_id``) by more than the interval: the attack did not transfer, and the
  cell is no robustness number until an adaptive attack has been run. An adaptive cell (trained
  through the defense, ``attack_through``) fires where the non-adaptive patches of the same size
  leave *lower* accuracy through the same defense and λ (seed means): the white-box attack lost to
  the transferred one.
* *non-monotonic* (Carlini et al. 2019): per model × attack × defense × λ, a patch size whose seed
  mean accuracy is above a smaller size's by more than the two intervals.
* *incomplete optimisation* and *silent success* (Pintor et al. 2022) on the minibatch traces of
  the run that produced the cell's patch (:mod:`.runs`: by run, not by pixels;
  :func:`~patchbench.audit.traces.minibatch_incomplete_optimization`,
  :func:`~patchbench.audit.traces.minibatch_silent_success`); a patch saved without traces (older
  caches, an adaptive run's earlier snapshots) is not checked, nor silent success for a patch
  trained at random places (its trace's success is at random places, the returned patch's at the
  test place).
* *the attack's outcome* (``audit_attack_failed``), the condition of *unstable predictions*: Pintor
  et al.'s reference code records whether the attack failed next to the indicators
  (``src/indicators/indicators.py``: ``attack_fails``, lines 226-239, is computed at line 262 and
  stored as ``attack_success`` at line 280 beside the indicators' values; lines 272-277 turn a
  failure back into a success where silent success or transfer failure explain it) — an attack that
  works did not fail, so no indicator explains a failure there. Per cell: the attack failed where the cell's accuracy
  exceeds what the attack leaves without the defense by more than the interval — for a transferred
  patch, the same patch on the undefended model (as for transfer failure); for an adaptive cell, the
  non-adaptive attack's undefended cells of the same size (seed mean), else the snapshot's own
  undefended cell; without either, failed (nothing shows it worked). An undefended cell has nothing
  to fail against (missing).

Intervals: a cell's own is the half-width of its Wilson 95 % interval; a seed mean's is
1.96·sqrt(s²/S + p̄(1 − p̄)/n) (seed-to-seed plus image variance; one seed: the Wilson half-width);
a difference's is the root sum of squares of the two.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from patchbench.audit.comparisons import non_monotonic, transfer_failure
from patchbench.audit.indicators import (
    AUDIT_ATTACK_FAILED,
    AUDIT_COLUMNS,
    AUDIT_INCOMPLETE_OPTIMIZATION,
    AUDIT_NON_MONOTONIC,
    AUDIT_NOTES,
    AUDIT_SILENT_SUCCESS,
    AUDIT_TRANSFER_FAILURE,
    AUDIT_UNSTABLE_PREDICTIONS,
)
from patchbench.audit.stability import UNSTABLE_THRESHOLD
from patchbench.audit.traces import minibatch_incomplete_optimization, minibatch_silent_success, silent_success
from patchbench.defenses.base import UNDEFENDED, is_undefended

NOTES = AUDIT_NOTES


def _half(cells: pd.DataFrame) -> pd.Series:
    return (cells["ci_high"].astype(float) - cells["ci_low"].astype(float)) / 2


def seed_mean(rows: pd.DataFrame) -> tuple[float, float]:
    """(mean accuracy over the seeds' cells, its half-width; see the module docstring)."""
    acc = rows["accuracy"].astype(float)
    if len(rows) == 1:
        return float(acc.iloc[0]), float(_half(rows).iloc[0])
    p, n, k = float(acc.mean()), int(rows["n"].iloc[0]), len(rows)
    return p, 1.96 * math.sqrt(float(acc.var(ddof=1)) / k + p * (1 - p) / n)


def empty_verdicts(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per attacked cell, every indicator not run."""
    att = cells[cells["condition"] == "attacked"]
    out = pd.DataFrame({"run_id": att["run_id"].to_numpy()})
    for col in (*AUDIT_COLUMNS, AUDIT_ATTACK_FAILED):
        out[col] = pd.array([pd.NA] * len(out), dtype="boolean")
    out[NOTES] = ""
    return out.set_index("run_id")


def mark(out: pd.DataFrame, rid: str, column: str, fired: bool, note: str) -> None:
    """Record one check of ``column`` on cell ``rid``: it fires if this or an earlier check fired."""
    before = out.loc[rid, column]
    out.loc[rid, column] = bool(fired) or (not pd.isna(before) and bool(before))
    if fired:
        out.loc[rid, NOTES] = (out.loc[rid, NOTES] + " | " if out.loc[rid, NOTES] else "") + note


def _lam(v) -> str:
    return "" if pd.isna(v) else f" λ {v:g}"


def transfer_verdicts(cells: pd.DataFrame, out: pd.DataFrame) -> None:
    att = cells[cells["condition"] == "attacked"]
    adaptive = att["attack_through"].notna()
    plain = att[~adaptive]
    undefended = plain[plain["defense"] == UNDEFENDED].drop_duplicates("patch_id", keep="last").set_index("patch_id")
    for r in plain[plain["defense"] != UNDEFENDED].itertuples():
        if r.patch_id not in undefended.index:
            continue
        u = undefended.loc[r.patch_id]
        hw = math.hypot((r.ci_high - r.ci_low) / 2, (u["ci_high"] - u["ci_low"]) / 2)
        # the defended cell's accuracy against the surrogate's on the same patch and images
        fired = bool(transfer_failure(float(r.accuracy), float(u["accuracy"]), hw))
        mark(out, r.run_id, AUDIT_TRANSFER_FAILURE, fired,
             f"transfer failure: the patch, optimised on the undefended model, leaves {r_pct(u['accuracy'])} there and "
             f"{r_pct(r.accuracy)} through {r.defense}{_lam(r.lam)} (+{100 * (r.accuracy - u['accuracy']):.1f} pp > "
             f"{100 * hw:.1f} pp): the cell measures a transfer that failed, not the defense")
    through = att[adaptive & (att["defense"] == att["attack_through"])]
    for key, rows in through.groupby(["model_id", "attack", "defense", "lam", "patch_px"], dropna=False):
        adaptive_verdicts(key, rows, plain, out)


def adaptive_verdicts(key: tuple, rows: pd.DataFrame, plain: pd.DataFrame, out: pd.DataFrame) -> None:
    """An adaptive attack's result is its last recorded step (earlier steps are snapshots of its
    path, each stored as a cell): transfer failure against the non-adaptive patches, and silent
    success where an earlier snapshot left lower accuracy than the last by more than the interval."""
    model_id, attack, defense, lam, px = key
    steps = rows["attack_step"].astype(float) if "attack_step" in rows else pd.Series(0.0, index=rows.index)
    last = rows[steps == steps.max()]
    a, ha = seed_mean(last)
    base = attack.removesuffix("-adaptive")
    other = plain[(plain["model_id"] == model_id) & (plain["attack"] == base) & (plain["defense"] == defense)
                  & (plain["patch_px"] == px) & ((plain["lam"] - lam).abs() < 1e-6)]
    if len(other):
        b, hb = seed_mean(other)
        hw = math.hypot(ha, hb)
        fired = bool(transfer_failure(a, b, hw))
        for rid in last["run_id"]:
            mark(out, rid, AUDIT_TRANSFER_FAILURE, fired,
                 f"transfer failure: the adaptive {px:g}px attack through {defense}{_lam(lam)} leaves {r_pct(a)}, "
                 f"the non-adaptive {base} patches {r_pct(b)} (+{100 * (a - b):.1f} pp beyond {100 * hw:.1f} pp): "
                 "the white-box attack is the weaker one")
    earlier = rows[steps < steps.max()]
    if len(earlier):
        by_step = earlier.groupby("attack_step").apply(seed_mean, include_groups=False)
        best_step, (b, hb) = min(by_step.items(), key=lambda kv: kv[1][0])
        hw = math.hypot(ha, hb)
        fired = bool(silent_success(torch.tensor([1 - b], dtype=torch.float64), torch.tensor(1 - a, dtype=torch.float64), hw))
        for rid in last["run_id"]:
            mark(out, rid, AUDIT_SILENT_SUCCESS, fired,
                 f"silent success: the adaptive attack's step {best_step:g} left {r_pct(b)}, its returned patch "
                 f"{r_pct(a)} (+{100 * (a - b):.1f} pp beyond {100 * hw:.1f} pp): return the best iterate")


def monotone_verdicts(cells: pd.DataFrame, out: pd.DataFrame) -> None:
    att = cells[(cells["condition"] == "attacked") & cells["patch_px"].notna()]
    keys = ["model_id", "attack", "defense", "lam", "attack_through"] + (["attack_step"] if "attack_step" in att else [])
    for _, group in att.groupby(keys, dropna=False):
        sizes = sorted(group["patch_px"].unique())
        means = {s: seed_mean(group[group["patch_px"] == s]) for s in sizes}
        for j, s in enumerate(sizes):
            if j == 0:
                continue
            rises = [t for t in sizes[:j] if bool(non_monotonic([means[t][0], means[s][0]], [means[t][1], means[s][1]]))]
            note = "" if not rises else (
                f"non-monotonic: {r_pct(means[s][0])} at {s:g}px is above {r_pct(means[rises[0]][0])} at {rises[0]:g}px "
                "beyond both intervals; a larger patch can copy a smaller one, so the larger one is under-optimised")
            for rid in group.loc[group["patch_px"] == s, "run_id"]:
                mark(out, rid, AUDIT_NON_MONOTONIC, bool(rises), note)


def _trace_verdict(meta: dict) -> tuple[bool, bool | None, int] | None:
    """(incomplete, silent or None where not readable, steps) from one run's traces; None without a trace."""
    loss, hits = meta.get("loss_trace") or [], meta.get("hit_trace") or []
    if len(loss) < 4:
        return None
    incomplete = bool(minibatch_incomplete_optimization(torch.tensor(loss, dtype=torch.float64)))
    silent = None
    final = meta.get("train_success_rate")
    # a patch trained at random places (EoT) hit them, not the test place its final rate is measured at
    if len(hits) >= 4 and final is not None and meta.get("batch_size") and not meta.get("random_placement"):
        n_final = int(meta["success_n"]) if meta.get("success_n") else None
        silent = bool(minibatch_silent_success(torch.tensor(hits, dtype=torch.float64), float(final),
                                               int(meta["batch_size"]), n_final))
    return incomplete, silent, len(loss)


def trace_verdicts(cells: pd.DataFrame, runs: dict[str, dict | None], out: pd.DataFrame) -> None:
    """``runs``: run id of a cell -> the saved meta of the run that produced its patch (``loss_trace``,
    ``hit_trace``, ``batch_size``, ``train_success_rate``; :func:`patchbench.audit.runs.cell_runs`),
    None where it cannot be told."""
    att = cells[cells["condition"] == "attacked"]
    done: dict[int, tuple | None] = {}
    for rid in att["run_id"]:
        meta = runs.get(rid)
        if not meta:
            continue
        if id(meta) not in done:
            done[id(meta)] = _trace_verdict(meta)
        verdict = done[id(meta)]
        if verdict is None:
            continue
        incomplete, silent, steps = verdict
        mark(out, rid, AUDIT_INCOMPLETE_OPTIMIZATION, incomplete,
             f"incomplete optimisation: the patch's loss over its {steps} steps was still falling at the end "
             "(or never fell): more steps or a larger step size")
        if silent is not None:
            mark(out, rid, AUDIT_SILENT_SUCCESS, silent,
                 f"silent success: an earlier iterate of the patch hit more training images than the returned one "
                 f"({r_pct(meta.get('train_success_rate'))})")


def r_pct(x) -> str:
    return f"{100 * float(x):.1f} %"


def _twin_key(r) -> tuple:
    """What a cell shares with its patch's undefended cell: model, patch, and the adaptive run's identity."""
    return (r.model_id, r.patch_id, *("" if pd.isna(v) else str(v) for v in (r.attack_params, r.attack_through)))


def outcome_verdicts(cells: pd.DataFrame, out: pd.DataFrame) -> dict[str, tuple[float, float, float, str]]:
    """``audit_attack_failed`` per attacked cell through a defense (module docstring); returns, per
    such cell, (its accuracy, the baseline's, the interval, what the baseline is) for the notes."""
    att = cells[cells["condition"] == "attacked"]
    undefended = att[att["defense"] == UNDEFENDED]
    twins = {_twin_key(r): r for r in undefended.itertuples()}  # the last stored one per patch (and run)
    plain_und = undefended[undefended["attack_through"].isna()]
    plain = {k: g for k, g in plain_und.groupby(["model_id", "attack", "patch_px"])}
    found: dict[str, tuple[float, float, float, str]] = {}
    for r in att[att["defense"] != UNDEFENDED].itertuples():
        twin = twins.get(_twin_key(r))
        own = None if twin is None else (float(twin.accuracy), (twin.ci_high - twin.ci_low) / 2)
        if isinstance(r.attack_through, str) and r.attack_through == r.defense:  # adaptive
            base = r.attack.removesuffix("-adaptive")
            same = plain.get((r.model_id, base, r.patch_px))
            ref, what = (own, "the snapshot without the defense") if same is None else \
                (seed_mean(same), f"{base} without the defense")
        else:
            ref, what = own, "the same patch without the defense"
        if ref is None:  # nothing shows the attack worked
            out.loc[r.run_id, AUDIT_ATTACK_FAILED] = True
            continue
        hw = math.hypot((r.ci_high - r.ci_low) / 2, ref[1])
        out.loc[r.run_id, AUDIT_ATTACK_FAILED] = bool(float(r.accuracy) - ref[0] > hw)
        found[r.run_id] = (float(r.accuracy), ref[0], hw, what)
    return found


def unstable_verdicts(cells: pd.DataFrame, out: pd.DataFrame, excess: dict[str, float],
                      outcomes: dict[str, tuple[float, float, float, str]], probes: int) -> None:
    """*Unstable predictions* per cell from its measured ``excess`` (run id -> Pintor's v through the
    defense minus v undefended, on the same images and probes; cells without one are not checked):
    fires where the attack failed on the cell and the excess is above :data:`UNSTABLE_THRESHOLD`."""
    att = cells[cells["condition"] == "attacked"].set_index("run_id")
    for rid, e in excess.items():
        if rid not in out.index or rid not in att.index or e is None or pd.isna(e):
            continue
        r = att.loc[rid]
        failed = out.loc[rid, AUDIT_ATTACK_FAILED]
        noisy = float(e) > UNSTABLE_THRESHOLD
        fired = bool(noisy and not is_undefended(r["defense"]) and not pd.isna(failed) and bool(failed))
        if fired and rid in outcomes:
            acc, base, hw, what = outcomes[rid]
            failure = f"the attack failed ({r_pct(acc)} vs {r_pct(base)} for {what}, beyond {100 * hw:.1f} pp)"
        else:
            failure = "the attack failed (nothing shows it worked: no cell without the defense to compare)"
        mark(out, rid, AUDIT_UNSTABLE_PREDICTIONS, fired,
             f"unstable predictions: {failure}, and through {r['defense']}{_lam(r['lam'])} the loss moves by "
             f"{float(e):.0%} more (Pintor's v) than without the defense under the same {probes} tiny random changes "
             f"of the patch region's pixels (threshold {UNSTABLE_THRESHOLD:.0%}): average the loss over the defense's "
             "noise (EOT)")


def cell_verdicts(cells: pd.DataFrame, runs: dict[str, dict | None]) -> pd.DataFrame:
    """Every stored-data indicator for the attacked cells of ``cells`` (one preset's), and the attack's
    outcome; ``runs``: each cell's patch run (:func:`patchbench.audit.runs.cell_runs`). The outcomes'
    numbers (for unstable predictions' notes) are in ``out.attrs["outcomes"]``."""
    cells = cells.assign(**{c: None for c in ("attack_params", "attack_through") if c not in cells})
    out = empty_verdicts(cells)
    if out.empty:
        out.attrs["outcomes"] = {}
        return out
    transfer_verdicts(cells, out)
    monotone_verdicts(cells, out)
    trace_verdicts(cells, runs, out)
    out.attrs["outcomes"] = outcome_verdicts(cells, out)
    return out
