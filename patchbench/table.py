"""Paper tables: the generic layer a paper's table builders use — the :class:`Table` spec, what a
builder is given (:class:`TableContext`), cell selection, accuracy-with-CI and Δ formatting, and
rendering. Finding and building a table by name is :mod:`patchbench.reporting.lookup`.

A paper's plugin (``patchbench/papers/<paper>/``) contributes :class:`Table` objects; each one
knows how to build its rows from stored cells. Ours and the paper's are shown side by side; Δ
(ours − paper, percentage points) is shown only when dataset and model are the paper's;
otherwise the caption names both settings and Δ is left out, since the numbers measure
different things.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from patchbench.audit.indicators import INDICATORS, Indicator, cell_kind
from patchbench.errors import PatchbenchError


@dataclass(frozen=True)
class TableContext:
    """What a builder knows besides the stored cells: whose cells to show (``preset``), that preset's
    paper-declared sections (``sections``, e.g. ``sanity``; empty for a preset that is not shipped),
    the paper's published tables (``reference(name)``: its ``reference/<name>.csv``) and, for a
    table that spans presets (one per dataset), another preset's sections (``sections_of(name)``)."""

    preset: str
    sections: dict
    reference: Callable[[str], pd.DataFrame]
    sections_of: Callable[[str], dict] | None = None


@dataclass(frozen=True)
class Table:
    """One rebuildable paper table. ``build(table, cells, context) -> (DataFrame, caption)``."""

    name: str
    paper: str  # the plugin's key in patchbench.papers.PAPERS
    title: str
    build: Callable[["Table", pd.DataFrame, TableContext], tuple[pd.DataFrame, str]]
    paper_presets: tuple[str, ...]  # presets whose cells it shows at paper scale, in preference order
    demo_preset: str
    options: tuple[tuple[str, object], ...] = ()  # builder-specific settings (attack, λ, reference table, ...)

    def option(self, key: str, default=None):
        return dict(self.options).get(key, default)

    def default_preset(self, cells: pd.DataFrame) -> str:
        """The first paper preset with stored cells, else the demo preset."""
        have = set(cells["preset"].dropna()) if len(cells) else set()
        return next((p for p in self.paper_presets if p in have), self.demo_preset)


# --------------------------------------------------------------------------------------------
# helpers for builders


def fmt_pct(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def fmt_acc_ci(row) -> str:
    """``acc [lo, hi]`` in percent from a cell row (Wilson 95% interval)."""
    return f"{100 * row['accuracy']:.2f} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def fmt_delta(ours: float | None, paper: float | None) -> str:
    return "" if ours is None or paper is None else f"{ours - paper:+.2f}"


def lam_match(series: pd.Series, lam) -> pd.Series:
    return series.isna() if pd.isna(lam) else (series - lam).abs() < 1e-6


def preset_cells(cells: pd.DataFrame, preset: str, what: str = "") -> pd.DataFrame:
    """Cells of ``preset``, oldest first; a one-line error when there are none."""
    df = cells[cells["preset"] == preset] if len(cells) else cells
    if df.empty:
        raise PatchbenchError(f"no stored {what + ' ' if what else ''}cells for preset {preset!r} in these results; "
                              f"run `patchbench sweep --preset {preset}` (or `patchbench reproduce`) first")
    return df.sort_values("created")


# --------------------------------------------------------------------------------------------
# the attack-failure audit in a table: a dagger on a flagged number, a legend under the table


def audit_tag(ind: Indicator) -> str:
    """The indicator's short name in a table: its words' initials (transfer_failure -> TF)."""
    return "".join(w[0] for w in ind.name.split("_")).upper()


def audit_fired(rows: pd.DataFrame) -> list[Indicator]:
    """The indicators that fire on any of ``rows`` (the stored cells behind one table number)."""
    return [i for i in INDICATORS.values() if i.column in rows and rows[i.column].fillna(False).astype(bool).any()]


def audit_mark(rows: pd.DataFrame) -> str:
    """`` †TF,IO`` after a number whose cells an indicator fires on, else ``""``."""
    fired = audit_fired(rows)
    return "" if not fired else " †" + ",".join(audit_tag(i) for i in fired)


def audit_legend(rows: pd.DataFrame, preset: str) -> list[str]:
    """The table's audit footnotes for all the cells it shows (``rows``): one per indicator that fires
    (what it says, what to run instead), or that the cells were not audited."""
    cols = [i.column for i in INDICATORS.values() if i.column in rows]
    if rows.empty or not cols or rows[cols].isna().all().all():
        return [f"Attack-failure audit: not run on these cells (`patchbench audit {preset}`)."]
    fired = audit_fired(rows)
    if not fired:
        return ["Attack-failure audit (Pintor et al. 2022; Carlini et al. 2019): no indicator fires on these cells."]
    return [f"† {audit_tag(i)} = {i.name.replace('_', ' ')} ({i.source}): {i.explains}. Run instead: {run_instead(i, rows)}."
            for i in fired] + [f"`patchbench audit {preset}` explains each flagged cell."]


def run_instead(ind: Indicator, rows: pd.DataFrame) -> str:
    """The remedy for the kinds of cell ``ind`` fires on among ``rows`` (an adaptive cell's differs:
    :meth:`Indicator.remedy`), each kind named where they differ."""
    hit = rows[rows[ind.column].fillna(False).astype(bool)]
    kinds = list(dict.fromkeys(cell_kind(d, t) for d, t in zip(hit.get("defense", pd.Series(["?"] * len(hit))),
                                                                 hit.get("attack_through", pd.Series([None] * len(hit))))))
    words = list(dict.fromkeys(ind.remedy(k)[1] for k in kinds))
    if len(words) <= 1:
        return words[0] if words else ind.run_instead
    return "; ".join(f"{k} cells: {ind.remedy(k)[1]}" for k in kinds)


def machine_note(cells: pd.DataFrame) -> str:
    """Where ``cells`` were computed: each CPU × torch threads × torch version (× GPU) among them, with
    its share of the cells where there are several; cells from before these columns say so."""
    if not len(cells):
        return "Machine: no cells."
    cols = ["cpu", "threads", "torch", "device", "compiled"]
    known = cells.reindex(columns=cols)
    known["compiled"] = known["compiled"].astype(object).eq(True)  # cells from before the column ran eager
    old = int(known["cpu"].isna().sum())
    groups = known.dropna(subset=["cpu"]).groupby(cols, dropna=False).size()
    parts = [f"{cpu}, {int(th) if pd.notna(th) else '?'} torch threads, torch {tv}" + ("" if dev == "cpu" else f", {dev}")
             + (", defenses compiled (--compile)" if comp else "")
             + (f" ({k} cell{'s' * (k != 1)})" if len(groups) > 1 or old else "") for (cpu, th, tv, dev, comp), k in groups.items()]
    if old:
        parts.append(f"not recorded ({old} cell{'s' * (old != 1)} from before patchbench recorded the machine; the report's "
                     "provenance names the run's)")
    return ("Computed on " if len(groups) else "Machine ") + "; ".join(parts) + "."


def spread_note(paper, preset: str) -> str:
    """``paper``'s measured machine-to-machine spread (:meth:`patchbench.paper.Paper.spread_of`) for the scale
    that ``preset`` belongs to."""
    scale = next((s for s, names in paper.presets.items() if preset in names), None)
    return paper.spread_of(scale) or (f"Machine-to-machine spread of {preset}: not measured. For scale: the ICAART 2022 "
                                       "demo moved by up to 12 pp between two CPUs, inside its 95 % intervals.")


def table_notes(table: pd.DataFrame, notes: list[str] | None = None) -> list[str]:
    """A table's footnotes: the preset's ``notes``, the table's own warnings (``attrs["warnings"]``),
    then the machine it came from and the measured machine-to-machine spread (``attrs["machine"]``)."""
    return list(notes or []) + list(table.attrs.get("warnings", [])) + list(table.attrs.get("machine", []))


def render(table: pd.DataFrame, caption: str, fmt: str, notes: list[str] | None = None) -> str | None:
    """Text for markdown/csv/latex; for rich, prints and returns None. Footnotes: :func:`table_notes`."""
    notes = table_notes(table, notes)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "markdown":
        return f"**{caption}**\n\n" + table.to_markdown(index=False, disable_numparse=True) + "".join(f"\n\n_{n}_" for n in notes) + "\n"
    if fmt == "latex":
        return table.to_latex(index=False, caption=caption, escape=True)
    if fmt == "rich":

        t = RichTable(title=caption, title_justify="left", show_lines=False, caption="\n".join(notes) or None)
        for col in table.columns:
            t.add_column(col, justify="left" if col in ("Defense", "λ") else "right",
                         style="bold" if col.endswith("ours") else ("dim" if col.endswith("paper") else None))
        for _, r in table.iterrows():
            t.add_row(*[str(v) for v in r])
        Console(width=max(120, 24 * len(table.columns))).print(t)
        return None
    raise PatchbenchError(f"unknown format {fmt!r}; use rich, markdown, csv or latex")
