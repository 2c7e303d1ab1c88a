"""``patchbench reproduce PAPER... | all``: everything the papers' tables and figures need, resumably.

First one preflight over every preset of every chosen paper (:mod:`patchbench.runner.preflight`: device,
datasets, weight files, disk), which refuses in seconds and writes nothing when a piece is
missing. Then, per paper and per preset of the chosen scale (the plugin lists them): the preset's
experiment (:func:`patchbench.runner.sweep.run_preset`: models, patches, the sweep — cached artifacts and
stored cells are reused) and the paper's extra steps; then every table the preset names (markdown
files plus the printed table) and the paper's figures; and a provenance entry (git SHA, config
hashes, device, wall time) in ``<out>/provenance.json``. A rerun finds every artifact and cell and
only rebuilds the reports.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from patchbench.devices import resolve_device
from patchbench.errors import check
from patchbench.evaluation.stages import stage, summary, take
from patchbench.papers import PAPERS, get_paper
from patchbench.presets import check_sets_reach_a_preset, load_preset
from patchbench.reporting.lookup import build_table
from patchbench.reporting.provenance import now, record
from patchbench.runner.preflight import preflight
from patchbench.runner.sweep import run_preset
from patchbench.store.results import ResultStore, one_precision
from patchbench.table import render
from patchbench.util import atomic_write

console = Console(stderr=True, soft_wrap=True)

ALL = "all"


def paper_names(papers: str | list[str]) -> list[str]:
    """Paper names, checked; ``all`` stands for every registered paper (registry order)."""

    names = [papers] if isinstance(papers, str) else list(papers)
    return list(dict.fromkeys(n for name in names for n in (PAPERS if name == ALL else [get_paper(name).name])))


def default_out(results: Path, scale: str) -> Path:
    """Where a scale's tables, figures, provenance and report go: ``RESULTS/<scale>``."""
    return Path(results) / scale


def reproduce(paper: str | list[str], scale: str, results: Path, out: Path | None, overrides: list[str] | None = None,
              progress: bool = True, print_tables: bool = True, allow_cpu: bool = False,
              only: list[str] | None = None) -> list[Path]:
    """Run and report ``paper`` (names, or ``all``) at ``scale`` (paper | demo); returns the files written.

    ``only``: run just these presets of the papers' scale (``make demo`` runs the ICAART demo's main
    model, ``demo-fmnist``, inside its time budget); a name that is none of them is an error, before any work.
    """

    names = paper_names(paper)
    chosen = {n: list(get_paper(n).scale(scale)) for n in names}
    if only:
        known = [p for ps in chosen.values() for p in ps]
        unknown = [p for p in only if p not in known]
        check(not unknown, f"--only {', '.join(unknown)}: not a {scale}-scale preset of {', '.join(names)} "
                           f"(these are: {', '.join(known) or 'none'})")
        chosen = {n: [p for p in ps if p in only] for n, ps in chosen.items()}
    plan = {n: [load_preset(p, overrides, skip_absent_sections=True) for p in ps] for n, ps in chosen.items()}
    check_sets_reach_a_preset([p for ps in plan.values() for p in ps], overrides)  # e.g. certified.n: the presets with one
    for n in [n for n, presets in plan.items() if not presets]:  # e.g. PatchCleanser's demo is the ICAART demo's table
        if not only:
            console.print(f"{n} has no {scale}-scale preset of its own; skipped")
        del plan[n]
    preflight(plan, scale, Path(results), allow_cpu)  # every missing piece named, before anything is written
    out = Path(out) if out is not None else default_out(results, scale)
    store = ResultStore(results)
    written: list[Path] = []
    for name, presets in plan.items():
        started, t0 = now(), time.perf_counter()
        before = len(store.load_cells())
        device = None
        for p in presets:
            device = resolve_device(p.device)
            run_preset(p, store, device, progress)
        with stage("tables"):
            written += report_paper(name, presets, results, out, print_tables)
        new_cells, wall, times = len(store.load_cells()) - before, time.perf_counter() - t0, take()
        written.append(record(out, name, scale, presets, device, started, wall, new_cells, times))
        console.print(f"[bold]{name}[/]: {wall:.0f} s, {new_cells} new cells; stages: {summary(times, wall)}")
    console.print(f"reports in {out}: " + ", ".join(sorted({f.name for f in written})))
    return written


def report_paper(paper: str, presets, results: Path, out: Path, print_tables: bool = True) -> list[Path]:
    """The tables (markdown, and printed) and figures of ``paper``'s presets, from the stored cells."""

    plugin = get_paper(paper)
    cells = one_precision(ResultStore(results, read_only=True).load_cells())
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for p in presets:
        for table_name in p.tables:
            tab, caption = build_table(table_name, cells, p.name)
            if print_tables:
                render(tab, caption, "rich", p.notes)
            written.append(atomic_write(out / f"{table_name}.md", render(tab, caption, "markdown", p.notes)))
        written += plugin.report(p, cells, out)
    return written
