"""``patchbench reproduce PAPER``: everything a paper's tables and figures need, resumably.

For each preset of the chosen scale: the classifier (trained or loaded, cached), the patches
(cached), the sweep over every attack × defense × λ of the preset (stored cells are skipped),
the adaptive attack where the preset asks for it; then every table (markdown files plus the
printed table) and figure. A rerun finds every artifact and cell and only rebuilds the reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from patchbench.errors import PatchbenchError

console = Console(stderr=True)


@dataclass(frozen=True)
class Reproduction:
    title: str
    presets: dict[str, list[str]]  # scale -> presets
    figures: tuple[str, ...] = ()  # lambda-curve | adaptive-curve


REPRODUCTIONS: dict[str, Reproduction] = {
    "icaart2022": Reproduction(
        "ICAART 2022 (SLGS / WLGS): Tables 1-4, SSIM, Fig. 5, Fig. 10",
        {"paper": ["icaart2022-vgg16", "icaart2022-inception_v3"],
         "demo": ["demo-fmnist", "demo-fmnist-inception"]},
        figures=("lambda-curve", "adaptive-curve"),
    ),
    "tomm2022": Reproduction(
        "TOMM 2022 (AAD): Table 6 (five trainings x ten attacks), Table 7 (A3 attacks)",
        {"paper": ["tomm2022-mnist", "tomm2022-cifar10", "tomm2022-imagenet"],
         "demo": ["demo-tomm-fmnist"]},
    ),
}


def run_preset(preset, store, device, progress: bool = True) -> None:
    """Model, patches, the full sweep, and the adaptive attack of one preset."""
    from patchbench import pipeline

    if preset.trainings:  # TOMM: one model per training mode, each attacked by every evasion attack
        for training in preset.trainings:
            rows = pipeline.run_evasion_grid(preset, training, store, device, progress)
            console.print(f"[bold]{preset.name}[/] {training}: {len(rows)} cells")
        return
    loaded = pipeline.ensure_model(preset, store, device, progress=progress)
    patches = pipeline.ensure_patches(preset, loaded, store, device, progress=progress)
    runs = pipeline.defense_runs(preset, loaded.model, None, None)
    rows = pipeline.run_grid(preset, loaded, patches, runs, store, device, progress=progress)
    console.print(f"[bold]{preset.name}[/]: {len(rows)} cells")
    if preset.adaptive.defenses:
        from patchbench.adaptive import run_adaptive

        a = preset.adaptive
        rows = run_adaptive(preset, loaded, store, device, a.defenses, lam=a.lam,
                            sizes=None if a.size is None else [a.size], steps=a.steps,
                            record_every=a.record_every, progress=progress)
        console.print(f"[bold]{preset.name}[/]: {len(rows)} adaptive-attack cells")


def reproduce(paper: str, scale: str, results: Path, out: Path | None, overrides: list[str] | None = None,
              progress: bool = True, print_tables: bool = True) -> list[Path]:
    """Run and report ``paper`` at ``scale`` (paper | demo); returns the report files written."""
    from patchbench import pipeline
    from patchbench.config import load_preset
    from patchbench.results import ResultStore
    from patchbench.tables import build_table, render

    if paper not in REPRODUCTIONS:
        raise PatchbenchError(f"unknown paper {paper!r}; known: {', '.join(REPRODUCTIONS)}")
    rep = REPRODUCTIONS[paper]
    if scale not in rep.presets:
        raise PatchbenchError(f"unknown --preset-scale {scale!r}; use {' or '.join(rep.presets)}")
    presets = [load_preset(name, overrides) for name in rep.presets[scale]]
    out = Path(out) if out is not None else Path(results) / "reports" / f"{paper}-{scale}"
    store = ResultStore(results)
    for p in presets:  # check every preset's data before any long work starts
        pipeline.check_data(p)
    for p in presets:
        run_preset(p, store, pipeline.resolve_device(p.device), progress)

    cells = store.load_cells()
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for p in presets:
        for table_name in p.tables:
            tab, caption = build_table(table_name, cells, p.name)
            if print_tables:
                render(tab, caption, "rich", p.notes)
            path = out / f"{table_name}.md"
            _write_text(path, render(tab, caption, "markdown", p.notes))
            written.append(path)
        written += _figures(rep, p, cells, out)
    console.print(f"reports in {out}: " + ", ".join(f.name for f in written))
    return written


def _figures(rep: Reproduction, preset, cells, out: Path) -> list[Path]:
    from patchbench import plots

    paths = []
    have = set(cells.loc[cells["preset"] == preset.name, "defense"].dropna())
    if "lambda-curve" in rep.figures and have & set(plots.CURVE_DEFENSES):
        paths.append(plots.lambda_curve(cells, preset.name, out / f"{preset.name}-lambda-curve.png"))
    if "adaptive-curve" in rep.figures and preset.adaptive.defenses:
        paths.append(plots.adaptive_curve(cells, preset.name, out / f"{preset.name}-adaptive.png"))
        path = out / f"{preset.name}-adaptive.md"
        _write_text(path, plots.adaptive_table(cells, preset.name).to_markdown(index=False, floatfmt=".1f") + "\n")
        paths.append(path)
    return paths


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
