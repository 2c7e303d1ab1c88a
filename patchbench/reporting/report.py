"""``patchbench report``: one report of every paper's tables and figures at a scale.

Reads the stored cells under ``results`` (:class:`patchbench.store.results.ResultStore`), each paper's
presets, tables, figures and known deviations (:class:`patchbench.paper.Paper`), the
``<paper>-*.csv`` files and the ``provenance.json`` that ``patchbench reproduce`` leaves in the
output folder. Writes ``report.html`` (one self-contained page: no script, no network, figures
inlined) and ``REPORT.md`` (the same in markdown, figures linked) there, after redrawing each
preset's figures with its paper's ``report``, and the leaderboard of the scale's cells (:mod:`.leaderboard`)
as its last section and as ``leaderboard.json``. Gathering is :mod:`.collect` (with :mod:`.provenance`),
rendering :mod:`.html` and :mod:`.markdown`.
"""

from __future__ import annotations

from pathlib import Path

from patchbench.reporting.collect import collect
from patchbench.reporting.html import render_html
from patchbench.reporting.leaderboard import MAX_AREA_PCT, to_json
from patchbench.reporting.markdown import render_markdown
from patchbench.util import atomic_write


def write_report(results: Path, scale: str, out: Path | None = None, papers: list[str] | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``REPORT.md`` for every paper (or ``papers``) at ``scale`` into ``out``
    (default ``results/<scale>``); returns (html_path, md_path). A preset without stored cells is
    shown as not run yet; no stored cell at all is a one-line PatchbenchError."""
    results = Path(results)
    out = Path(out) if out is not None else results / scale
    report = collect(results, scale, out, papers)
    html_path = atomic_write(out / "report.html", render_html(report))
    md_path = atomic_write(out / "REPORT.md", render_markdown(report))
    if report.board:
        atomic_write(out / "leaderboard.json", to_json(report.board, MAX_AREA_PCT))
    return html_path, md_path
