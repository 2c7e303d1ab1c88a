"""Tables and figures by name, built from the cells under a results directory: the registries the
paper plugins fill (:func:`all_tables`, :func:`find_figure`), ``patchbench table`` and ``patchbench plot``."""

from __future__ import annotations

import pandas as pd

from patchbench.errors import PatchbenchError
from patchbench.papers import PAPERS, get_paper
from patchbench.presets import load_preset, preset_names
from patchbench.store.results import ResultStore, one_precision
from patchbench.reporting.superseded import drop_superseded
from patchbench.table import Table, TableContext, machine_note, render, spread_note
from patchbench.util import atomic_write


def all_tables() -> dict[str, Table]:
    """Every paper's tables by name."""
    return {name: t for paper in PAPERS.values() for name, t in paper.tables.items()}


def build_table(name: str, cells: pd.DataFrame, preset: str | None = None) -> tuple[pd.DataFrame, str]:
    """Return (table, caption) of table ``name`` for ``preset`` (default: see Table.default_preset)."""
    tables = all_tables()
    if name not in tables:
        raise PatchbenchError(f"unknown table {name!r}; known: {', '.join(tables)}")
    t = tables[name]
    used = preset or t.default_preset(cells)
    paper = get_paper(t.paper)
    cells, left_out = drop_superseded(cells)  # a defense's cells under parameters the preset no longer has
    table, caption = t.build(t, cells, TableContext(used, preset_sections(used), paper.reference, preset_sections))
    table.attrs["warnings"] = list(table.attrs.get("warnings", [])) + left_out.get(used, [])
    # the spread is that of the scale the preset belongs to, in whichever paper runs it (the certified
    # table of the PatchCleanser paper also shows the ICAART demo's cells)
    owner = next((p for p in PAPERS.values() if any(used in names for names in p.presets.values())), paper)
    table.attrs["machine"] = [machine_note(cells[cells["preset"] == used]), spread_note(owner, used)]
    return table, caption



def preset_sections(name: str) -> dict:
    """A preset's paper-declared sections; {} for cells of a preset that is not shipped (a YAML file elsewhere)."""
    try:
        return load_preset(name).extra
    except PatchbenchError:
        return {}


def table_report(name: str, results, preset: str | None, fmt: str, out_file=None) -> str | None:
    """``patchbench table``: build table ``name`` from the cells under ``results`` and render it
    (``rich`` prints and returns None); ``out_file`` also gets it (markdown for rich)."""
    if name not in all_tables():
        raise PatchbenchError(f"unknown table {name!r}; known: {', '.join(all_tables())}")
    if fmt not in ("rich", "markdown", "csv", "latex"):
        raise PatchbenchError(f"unknown format {fmt!r}; use rich, markdown, csv or latex")
    cells = one_precision(ResultStore(results, read_only=True).load_cells())
    if cells.empty:
        raise PatchbenchError(f"no stored cells under {results}/cells; run `patchbench sweep` first")
    tab, caption = build_table(name, cells, preset)
    used = preset or tab.attrs.get("preset")
    notes = load_preset(used).notes if used in preset_names() or str(used).endswith((".yaml", ".yml")) else []
    text = render(tab, caption, fmt, notes)
    if out_file is not None:
        atomic_write(out_file, render(tab, caption, "markdown" if fmt == "rich" else fmt, notes))
    return text


def find_figure(name: str):
    """The figure ``name`` of whichever paper registers it."""
    figures = {f.name: f for p in PAPERS.values() for f in p.figures.values()}
    if name not in figures:
        raise PatchbenchError(f"unknown figure {name!r}; known: {', '.join(figures)}")
    return figures[name]


def draw_figure(name: str, preset: str, results, out, params: dict):
    """``patchbench plot NAME``: the figure from the cells under ``results``; returns the PNG path."""
    fig = find_figure(name)
    cells = one_precision(ResultStore(results, read_only=True).load_cells())
    if cells.empty:
        raise PatchbenchError(f"no stored cells under {results}/cells; run `patchbench sweep` or `patchbench reproduce` first")
    return fig.draw(cells, preset, out, **params)
