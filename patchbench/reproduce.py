"""``patchbench reproduce PAPER``: everything a paper's tables and figures need, resumably.

For each preset of the chosen scale (the paper plugin lists them): the preset's experiment
(:func:`patchbench.run_preset`: models, patches, the sweep — cached artifacts and stored
cells are reused) and the paper's extra steps; then every table the preset names (markdown
files plus the printed table) and the paper's figures. A rerun finds every artifact and cell and
only rebuilds the reports.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

console = Console(stderr=True)


def reproduce(paper: str, scale: str, results: Path, out: Path | None, overrides: list[str] | None = None,
              progress: bool = True, print_tables: bool = True) -> list[Path]:
    """Run and report ``paper`` at ``scale`` (paper | demo); returns the report files written."""
    from patchbench.devices import resolve_device
    from patchbench.run import check_data, run_preset
    from patchbench.presets import load_preset
    from patchbench.papers import get_paper
    from patchbench.results import ResultStore, one_precision
    from patchbench.reporting import build_table
    from patchbench.tables import render
    from patchbench.util import atomic_write

    plugin = get_paper(paper)
    presets = [load_preset(name, overrides) for name in plugin.scale(scale)]
    out = Path(out) if out is not None else Path(results) / "reports" / f"{paper}-{scale}"
    store = ResultStore(results)
    for p in presets:  # check every preset's data before any long work starts
        check_data(p)
    for p in presets:
        run_preset(p, store, resolve_device(p.device), progress)

    cells = one_precision(store.load_cells())
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for p in presets:
        for table_name in p.tables:
            tab, caption = build_table(table_name, cells, p.name)
            if print_tables:
                render(tab, caption, "rich", p.notes)
            written.append(atomic_write(out / f"{table_name}.md", render(tab, caption, "markdown", p.notes)))
        written += plugin.report(p, cells, out)
    console.print(f"reports in {out}: " + ", ".join(f.name for f in written))
    return written
