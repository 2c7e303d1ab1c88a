"""A claim's verdict at a scale, from its paired test (:mod:`.stats`), the Holm adjustment across its paper's
claims, and the attack-failure audit of the cells behind it.

=================  ==========================================================================================
verdict            when
=================  ==========================================================================================
holds              Holm-adjusted two-sided p < ``ALPHA`` (0.05) and the effect lies on the claimed side of
                   the claim's boundary (0 for "a above b"; −margin for "a not below b by more than margin")
contradicted       Holm-adjusted p < ``ALPHA`` and the effect lies on the other side: a significant effect in
                   the opposite direction, or for a "stays close" claim an interval beyond the margin
inconclusive       computed, adjusted p >= ``ALPHA``
not computed       the claim's preset at this scale has no stored cells (or predictions) for a side; the line
                   names the command that computes them
unreliable         computed, but an attack-failure indicator (``audit_*`` columns the audit wrote beside the
                   cells) fires on a cell behind it: it cannot hold; the indicator is named, and the test's
                   own verdict is kept beside it (``test_verdict``)
=================  ==========================================================================================

The family for Holm is a paper's claims computed at the scale (unreliable ones included: they were tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from patchbench.audit.indicators import INDICATORS
from patchbench.claims.spec import Claim
from patchbench.claims.stats import PairedResult, holm
from patchbench.table import audit_tag

ALPHA = 0.05
HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_COMPUTED, UNRELIABLE = "holds", "contradicted", "inconclusive", "not computed", "unreliable"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_COMPUTED, UNRELIABLE)


@dataclass(frozen=True)
class Verdict:
    paper: str
    claim: Claim
    scale: str
    preset: str | None
    verdict: str = NOT_COMPUTED
    why: str = ""  # not computed: what is missing and the command; unreliable: the indicators
    result: PairedResult | None = None
    p_holm: float | None = None
    test_verdict: str | None = None  # what the test alone says (also for an unreliable claim)
    audit: tuple[str, ...] = ()  # indicators that fire on the claim's cells ("transfer failure (TF)")
    audited: bool = False  # whether any cell behind it was audited at all
    cells: tuple[str, ...] = field(default_factory=tuple)  # run ids behind it (a, then b)


def fired(cells: pd.DataFrame) -> tuple[list[str], bool]:
    """The indicators that fire on any of ``cells`` (``"transfer failure (TF)"``), and whether any was audited."""
    cols = [i for i in INDICATORS.values() if i.column in cells]
    audited = bool(cols) and not cells[[i.column for i in cols]].isna().all().all()
    hits = [f"{i.name.replace('_', ' ')} ({audit_tag(i)})" for i in cols if cells[i.column].fillna(False).astype(bool).any()]
    return hits, audited


def test_verdict(result: PairedResult, p_adjusted: float) -> str:
    """holds / contradicted / inconclusive from the adjusted p and the side of the boundary the effect is on."""
    if not p_adjusted < ALPHA:
        return INCONCLUSIVE
    return HOLDS if result.p_hold < result.p_opposite else CONTRADICTED


def judge(family: list[Verdict]) -> list[Verdict]:
    """Holm across the computed verdicts of one paper and scale, then each claim's verdict (see the module
    docstring); the not computed ones pass through."""
    tested = [i for i, v in enumerate(family) if v.result is not None]
    adjusted = holm([family[i].result.p for i in tested])
    out = list(family)
    for i, p_adj in zip(tested, adjusted):
        v = family[i]
        own = test_verdict(v.result, float(p_adj))
        if v.audit:
            out[i] = replace(v, p_holm=float(p_adj), test_verdict=own, verdict=UNRELIABLE,
                             why=f"the audit flags its cells: {', '.join(v.audit)}; the test alone: {own}")
        else:
            out[i] = replace(v, p_holm=float(p_adj), test_verdict=own, verdict=own, why=v.why)
    return out


def tally(verdicts: list[Verdict]) -> str:
    """``N of M claims hold`` (M: every declared claim, computed or not)."""
    return f"{sum(v.verdict == HOLDS for v in verdicts)} of {len(verdicts)} claims hold"
