"""``patchbench claims`` and the report's claims table: every declared claim of every paper (or of the chosen
ones) checked on the cells stored under a results directory at one scale.

Per claim: its preset at the scale, the cells of each side (:mod:`patchbench.claims.pairs`), the paired test (:mod:`patchbench.claims.stats`),
the audit's indicators on those cells; per paper, Holm across its computed claims and the verdicts
(:mod:`patchbench.claims.rules`). Cells are read as the tables read them: one precision per preset, a defense's cells under
parameters the preset no longer has left out.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from patchbench.claims.pairs import pair_cells, paired_outcomes, side_cells
from patchbench.claims.stats import paired_test, stable_seed
from patchbench.claims.rules import Verdict, fired, judge
from patchbench.errors import PatchbenchError
from patchbench.papers import PAPERS, get_paper
from patchbench.presets import load_preset
from patchbench.store.results import ResultStore, one_precision
from patchbench.reporting.superseded import drop_superseded


def scales() -> list[str]:
    """The scales the registered papers know (``demo``, ``paper``)."""
    return list(dict.fromkeys(s for p in PAPERS.values() for s in p.presets))


def command(preset: str, scale: str) -> str:
    """What computes a preset's cells: ``reproduce`` of the paper that runs it at the scale, else ``sweep``."""
    owner = next((p.name for p in PAPERS.values() if preset in p.presets.get(scale, ())), None)
    return f"patchbench reproduce {owner} --preset-scale {scale}" if owner else f"patchbench sweep --preset {preset}"


def claim_verdict(paper: str, claim, scale: str, cells: pd.DataFrame, load) -> Verdict:
    """One claim at ``scale``, tested but not yet judged (:func:`~patchbench.claims.rules.judge` does that
    across the paper's claims). ``load(run_id)`` reads a cell's predictions."""
    name = claim.presets.get(scale)
    if name is None:
        return Verdict(paper, claim, scale, None, why=f"the claim names no {scale}-scale preset (it is checked at "
                                                      f"{' and '.join(claim.presets)} scale)")
    try:
        preset = load_preset(name)
        mine = cells[cells["preset"] == preset.name] if len(cells) else cells
        if mine.empty:
            raise PatchbenchError(f"no stored cell of {preset.name}")
        a, b = side_cells(mine, claim.a, preset), side_cells(mine, claim.b, preset)
        pairs = pair_cells(a, b, claim.pair_by)
        if all(ra["run_id"] == rb["run_id"] for ra, rb in pairs) and claim.a.metric == claim.b.metric:
            raise PatchbenchError(f"both sides read the same cells at {name} (the preset has one {claim.a.label!r})")
        values_a, values_b = paired_outcomes(load, pairs, claim.a.metric, claim.b.metric)
    except PatchbenchError as exc:
        return Verdict(paper, claim, scale, name, why=f"{exc}; `{command(name, scale)}` computes them")
    result = paired_test(values_a, values_b, claim.binary, claim.direction, claim.boundary,
                         stable_seed(f"{paper}/{claim.id}/{scale}"))
    used = list(dict.fromkeys([ra["run_id"] for ra, _ in pairs] + [rb["run_id"] for _, rb in pairs]))
    audit, audited = fired(mine[mine["run_id"].isin(used)])
    return Verdict(paper, claim, scale, name, result=result, audit=tuple(audit), audited=audited, cells=tuple(used))


def check_claims(results, scale: str, papers: list[str] | None = None) -> list[Verdict]:
    """Every declared claim of ``papers`` (default: every registered paper) at ``scale``, judged, in the
    registry's and the papers' declaration order."""
    known = scales()
    if scale not in known:
        raise PatchbenchError(f"unknown --preset-scale {scale!r}; use {' or '.join(known)}")
    chosen = [get_paper(p) for p in papers] if papers else list(PAPERS.values())
    store = ResultStore(Path(results), read_only=True)
    cells = one_precision(store.load_cells())
    if cells.empty:
        raise PatchbenchError(f"no stored cells under {Path(results) / 'cells'}; run `patchbench reproduce all "
                              f"--preset-scale {scale}` first")
    cells, _ = drop_superseded(cells)
    out = []
    for paper in chosen:
        out += judge([claim_verdict(paper.name, c, scale, cells, store.load_predictions) for c in paper.claims])
    return out

