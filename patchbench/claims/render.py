"""Verdicts as a table (one row per claim: the paper, the claim and its source, the paper's numbers, ours, the
effect with its interval, the Holm-adjusted p, the verdict and why) in rich, markdown or JSON, with the
"N of M claims hold" line per paper and overall."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from patchbench.claims.spec import METRICS
from patchbench.claims.rules import HOLDS, VERDICTS, Verdict, tally
from patchbench.errors import PatchbenchError

FORMATS = ("rich", "markdown", "json")
RULE = ("Verdicts: holds / contradicted = Holm-adjusted two-sided p < 0.05 across the paper's claims, the effect on "
        "the claimed / the other side of the claim's boundary (0, or the margin of a \"stays close\" claim); "
        "inconclusive otherwise; unreliable = an attack-failure indicator fires on a cell behind it; not computed = "
        "its cells are not stored at this scale. Tests: exact McNemar on one pair of cells, else a paired bootstrap "
        "over images and patch seeds / regions (10,000 seeded resamples); the interval is the bootstrap's 95 %.")


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _shown(v: Verdict, binary, other=None) -> str:
    """A verdict's result as text: empty without one; ``binary(result)`` for a claim on a 0/1 metric
    (in percent), else ``other(result)`` (default: the same)."""
    r = v.result
    if r is None:
        return ""
    return binary(r) if v.claim.binary or other is None else other(r)


def ours(v: Verdict) -> str:
    return _shown(v, lambda r: f"{_pct(r.mean_a)} vs {_pct(r.mean_b)} %", lambda r: f"{r.mean_a:.4g} vs {r.mean_b:.4g}")


def effect(v: Verdict) -> str:
    return _shown(v, lambda r: f"{100 * r.effect:+.1f} pp [{100 * r.low:+.1f}, {100 * r.high:+.1f}]",
                  lambda r: f"{r.effect:+.4g} [{r.low:+.4g}, {r.high:+.4g}]")


def test_text(v: Verdict) -> str:
    return _shown(v, lambda r: f"{'McNemar' if r.test == 'exact McNemar' else 'bootstrap'}, {r.n_images} img × {r.n_replicates}")


def verdict_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per claim, for reading."""
    return pd.DataFrame([{
        "Paper": v.paper, "Claim": v.claim.id, "Source": v.claim.source, "Statement": v.claim.statement,
        "Paper's numbers": v.claim.paper_numbers, "Preset": v.preset or "", "Ours": ours(v), "Effect [95 % CI]": effect(v),
        "Test": test_text(v), "p (Holm)": "" if v.p_holm is None else f"{v.p_holm:.2g}", "Verdict": v.verdict,
        "Why": note(v),
    } for v in verdicts], columns=["Paper", "Claim", "Source", "Statement", "Paper's numbers", "Preset", "Ours",
                                   "Effect [95 % CI]", "Test", "p (Holm)", "Verdict", "Why"])


def note(v: Verdict) -> str:
    """Why a claim got its verdict: what is missing, the audit's indicators, or what holding means; for a
    computed claim that does not hold, its controlled experiment and conclusion at this scale (``explained``)."""
    if v.result is None or v.audit:
        text = v.why
    else:
        text = f"holds when: {v.claim.rule()}" + ("" if v.audited else "; audit: not run on these cells")
    if v.result is not None and v.verdict != HOLDS:
        text += f"; why not: {v.claim.explained.get(v.scale, 'no controlled experiment yet')}"
    return text


def tallies(verdicts: list[Verdict]) -> list[str]:
    """Per paper and overall: ``N of M claims hold`` and how the others fell."""
    lines = []
    papers = list(dict.fromkeys(v.paper for v in verdicts))
    for name in papers + (["all papers"] if len(papers) > 1 else []):
        mine = [v for v in verdicts if v.paper == name or name == "all papers"]
        rest = Counter(v.verdict for v in mine if v.verdict != HOLDS)
        detail = ", ".join(f"{rest[k]} {k}" for k in VERDICTS if rest.get(k))
        lines.append(f"{name}: {tally(mine)}" + (f" ({detail})" if detail else ""))
    return lines


def records(verdicts: list[Verdict]) -> list[dict]:
    """Everything about each verdict, JSON-ready."""
    out = []
    for v in verdicts:
        r, c = v.result, v.claim
        out.append({
            "paper": v.paper, "claim": c.id, "scale": v.scale, "preset": v.preset, "source": c.source,
            "statement": c.statement, "paper_numbers": c.paper_numbers, "holds_when": c.rule(),
            "a": c.a.label, "b": c.b.label, "metric": METRICS[c.a.metric] + ("" if c.a.metric == c.b.metric else f" vs {METRICS[c.b.metric]}"),
            "direction": c.direction, "margin": c.margin, "verdict": v.verdict, "test_verdict": v.test_verdict,
            "why": v.why, "audit": list(v.audit), "audited": v.audited, "cells": list(v.cells),
            "test": r.test if r else None, "n_images": r.n_images if r else None, "n_replicates": r.n_replicates if r else None,
            "mean_a": r.mean_a if r else None, "mean_b": r.mean_b if r else None, "effect": r.effect if r else None,
            "ci_low": r.low if r else None, "ci_high": r.high if r else None, "p": r.p if r else None,
            "p_hold": r.p_hold if r else None, "p_opposite": r.p_opposite if r else None, "p_holm": v.p_holm,
            "discordant": list(r.discordant) if r and r.discordant else None,
        })
    return out


def render_claims(verdicts: list[Verdict], fmt: str, scale: str) -> str | None:
    """Text for markdown and JSON; rich prints (and returns None)."""
    if fmt not in FORMATS:
        raise PatchbenchError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps({"scale": scale, "tally": tallies(verdicts), "claims": records(verdicts)}, indent=1) + "\n"
    frame = verdict_frame(verdicts)
    caption = f"Claims at {scale} scale: {tally(verdicts)}"
    if fmt == "markdown":
        body = frame.astype(str).map(lambda s: s.replace("|", "\\|")).to_markdown(index=False, disable_numparse=True)
        return f"**{caption}**\n\n{body}\n\n" + "".join(f"- {t}\n" for t in tallies(verdicts)) + f"\n_{RULE}_\n"
    t = RichTable(title=caption, title_justify="left", show_lines=True, caption="\n".join(tallies(verdicts) + [RULE]),
                  caption_justify="left")
    for col in frame.columns:
        t.add_column(col, overflow="fold", style="bold" if col == "Verdict" else None)
    for _, row in frame.iterrows():
        t.add_row(*[str(x) for x in row])
    Console(width=220).print(t)
    return None
