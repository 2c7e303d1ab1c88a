"""patchbench command line: each command parses options, builds a Config, calls the library.

Every error a user can cause (unknown names, malformed values, missing or corrupt files) ends in
one line ``error: ...`` on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from patchbench.errors import PatchbenchError

app = typer.Typer(
    help="Benchmark localized adversarial attacks (adversarial patches) and their defenses.\n\n"
         "Train a classifier and patches, sweep attack × defense × λ into parquet, rebuild the papers' tables.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)

PRESET_HELP = "Preset name (see `patchbench list presets`) or path to a preset YAML file."
RESULTS_HELP = "Results directory: cells/ and predictions/ (parquet) and artifacts/ (cached models, patches)."
DEVICE_HELP = "auto, cpu or cuda[:i]; default: the preset's (auto = cuda if available)."
SET_HELP = "Override any preset field, e.g. --set data.eval_n=500 or --set attacks.0.steps=50 (repeatable)."
DATA_ROOT_HELP = "Dataset directory (overrides the preset and the dataset's search order)."
WEIGHTS_HELP = "Model weights: a torchvision weights name (DEFAULT, IMAGENET1K_V1) or a state-dict file."
PROGRESS_HELP = "Show progress bars on long steps."

# options shared by several commands (Typer's Annotated style)
PresetOpt = Annotated[str, typer.Option("--preset", "-p", help=PRESET_HELP)]
ResultsOpt = Annotated[Path, typer.Option("--results", help=RESULTS_HELP)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help=DEVICE_HELP)]
DataRootOpt = Annotated[Optional[str], typer.Option("--data-root", help=DATA_ROOT_HELP)]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help=WEIGHTS_HELP)]
SetOpt = Annotated[Optional[List[str]], typer.Option("--set", help=SET_HELP)]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help=PROGRESS_HELP)]


def _load(preset: str, sets: list[str] | None, device: str | None = None, data_root: str | None = None,
          weights: str | None = None, extra: list[str] | None = None):
    from patchbench.config import load_preset

    overrides = list(sets or [])
    if device:
        overrides.append(f"device={device}")
    if data_root:
        overrides.append(f"data.root={data_root}")
    if weights:
        overrides.append(f"model.weights={weights}")
    overrides.extend(extra or [])
    return load_preset(preset, overrides)


def _lam(value: str) -> float:
    from patchbench.config import parse_lambdas

    lams = parse_lambdas(value)
    if len(lams) != 1:
        raise PatchbenchError(f"--lam takes one value, got {value!r} (use sweep --lambdas for ranges)")
    return lams[0]


def _model_for(p, results: Path, progress: bool):
    """Device, results store and the preset's classifier (trained and cached when missing)."""
    from patchbench import pipeline
    from patchbench.results import ResultStore

    dev = pipeline.resolve_device(p.device)
    store = ResultStore(results)
    return dev, store, pipeline.ensure_model(p, store, dev, progress=progress)


def _defense_overrides(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


# --------------------------------------------------------------------------------------------


@app.command("list")
def list_cmd(what: str = typer.Argument(..., help="models, attacks, defenses, datasets, presets or tables.")):
    """List what is registered."""
    from rich.table import Table

    from patchbench.attacks import ATTACKS
    from patchbench.config import load_preset, preset_names
    from patchbench.data import DATASETS
    from patchbench.defenses import DEFENSES
    from patchbench.models import MODELS
    from patchbench.tables import TABLES

    t = Table(show_header=True)
    if what == "models":
        t.add_column("model"), t.add_column("weights"), t.add_column("description")
        for name, spec in MODELS.items():
            t.add_row(name, "torchvision ImageNet" if spec.pretrained else "trained by patchbench", spec.description)
    elif what == "attacks":
        t.add_column("attack"), t.add_column("description")
        for name, cls in ATTACKS.items():
            t.add_row(name, (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0])
    elif what == "defenses":
        t.add_column("defense"), t.add_column("parameters"), t.add_column("description")
        for name, cls in DEFENSES.items():
            t.add_row(name, ", ".join(cls.param_names()), (cls.__doc__ or "").strip().splitlines()[0])
    elif what == "datasets":
        t.add_column("dataset"), t.add_column("channels"), t.add_column("classes"), t.add_column("splits")
        for name, info in DATASETS.items():
            t.add_row(name, str(info.channels), str(info.num_classes), ", ".join(info.splits))
    elif what == "presets":
        t.add_column("preset"), t.add_column("tables"), t.add_column("description")
        for name in preset_names():
            p = load_preset(name)
            t.add_row(name, ", ".join(p.tables), p.description)
    elif what == "tables":
        t.add_column("table"), t.add_column("title")
        for name, spec in TABLES.items():
            t.add_row(name, spec.title)
    else:
        raise PatchbenchError(f"unknown list {what!r}; use models, attacks, defenses, datasets, presets or tables")
    out.print(t)


@app.command("train-model")
def train_model(
    preset: PresetOpt = "demo-fmnist",
    results: ResultsOpt = Path("results"),
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    force: bool = typer.Option(False, "--force", help="Retrain even if a cached checkpoint exists."),
    training: Optional[str] = typer.Option(
        None, "--training", help="raw, madry, madry+aad, alp or alp+aad (TOMM 2022; default: the preset's). "
                                 "Adversarial trainings checkpoint every epoch and resume after a kill."),
    sets: SetOpt = None,
    progress: ProgressOpt = True,
):
    """Train and cache the preset's classifier (checkpoint + JSON with accuracy, seed, config hash).

    For presets with pretrained torchvision weights and raw training this only checks that the
    weights load; adversarial trainings fine-tune them.
    """
    from patchbench import pipeline
    from patchbench.data import load_split
    from patchbench.results import ResultStore

    p = _load(preset, sets, device, data_root, weights, extra=[f"model.train.training={training}"] if training else None)
    dev = pipeline.resolve_device(p.device)
    store = ResultStore(results)
    if pipeline.needs_training(p):
        load_split(p.data.dataset, p.data.root, "train", p.data.image_size)  # fail early, write nothing
    loaded = pipeline.ensure_model(p, store, dev, force=force, progress=progress)
    if pipeline.needs_training(p):
        m = loaded.meta
        out.print(f"{p.model.arch}: test accuracy [bold]{m['test_accuracy']:.2%}[/] on {m['test_n']} images, "
                  f"seed {m['seed']}, config {m['config_hash']} -> {pipeline.model_path(p, store)}")
    else:
        out.print(f"{p.model.arch}: weights {loaded.meta['weights']} loaded (model id {loaded.model_id}); nothing to train")


@app.command("train-patch")
def train_patch(
    preset: PresetOpt = "demo-fmnist",
    attack: str = typer.Option("lavan", "--attack", "-a", help="Patch attack (see `patchbench list attacks`)."),
    size: int = typer.Option(..., "--size", "-s", help="Patch side in pixels, at the preset's image size (e.g. 52 at 400 px)."),
    target: Optional[int] = typer.Option(None, "--target", "-t", help="Target class index (default: the preset's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps (default: the preset's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of the patch init and batches."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the patch to this path (.pt, plus .png and .json beside it); default: cached under <results>/artifacts/patches."),
    results: ResultsOpt = Path("results"),
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    force: bool = typer.Option(False, "--force", help="Retrain even if the cached patch exists."),
    sets: SetOpt = None,
    progress: ProgressOpt = True,
):
    """Train a patch against the preset's classifier (trained first if it is not cached)."""
    from dataclasses import replace

    from patchbench import pipeline
    from patchbench.attacks import ATTACKS
    from patchbench.config import AttackConfig, validate_attack
    from patchbench.data import load_split

    p = _load(preset, sets, device, data_root, weights)
    if attack not in ATTACKS:
        raise PatchbenchError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS)}")
    base = next((a for a in p.attacks if a.name == attack), AttackConfig(name=attack))
    cfg = replace(base, sizes=[size],
                  **{k: v for k, v in {"target": target, "steps": steps, "seed": seed}.items() if v is not None})
    validate_attack(cfg, p.data.image_size)
    load_split(p.data.dataset, p.data.root, "train", p.data.image_size)  # fail early, write nothing
    dev, store, loaded = _model_for(p, results, progress)
    patch = pipeline.train_patch(p, cfg, size, loaded, store, dev, out=out_file, force=force, progress=progress)
    m = patch.meta
    out.print(f"{attack} {size}px ({m['area_pct']}% of {p.data.image_size}px) target {m['target']} "
              f"({m.get('target_name')}): training success [bold]{m['train_success_rate']:.1%}[/]")


@app.command("defend")
def defend(
    inputs: List[Path] = typer.Argument(..., help="PNG/JPEG files or directories (every image inside)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for the defended PNGs (same file stems)."),
    defense: str = typer.Option("lgs", "--defense", "-d", help="Defense (see `patchbench list defenses`)."),
    lam: str = typer.Option("2.3", "--lam", help="Smoothing factor λ >= 0 (ICAART Eq. 5)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="LGS window threshold (paper 0.2)."),
    window: Optional[int] = typer.Option(None, "--window", help="LGS window size in px (paper 15 at 400 px)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="LGS window overlap in px (paper 5)."),
    space: Optional[str] = typer.Option(None, "--space", help="pixel: LGS on [0, 1] images; normalized: on mean/std-normalized images (needs --preset)."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Take defense parameters and normalization from this preset."),
    save_maps: bool = typer.Option(False, "--save-maps", help="Also write the gradient map g(x) as DIR/maps/<stem>.png."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Defend image files: write T(x) for each input as PNG, nothing else changed."""
    import torch

    from patchbench import imageio, pipeline
    from patchbench.defenses import DEFENSES, build_defense

    if defense not in DEFENSES:
        raise PatchbenchError(f"unknown defense {defense!r}; known: {', '.join(DEFENSES)}")
    lam_v = _lam(lam)
    files = imageio.collect_images(inputs)
    images = [imageio.read_image(f) for f in files]  # validates every file before writing anything
    params: dict = {}
    model = None
    if preset:
        p = _load(preset, None)
        cfg = next((d for d in p.defenses if d.name == defense), None)
        params.update(cfg.params if cfg else {})
        model = build_classifier_stats(p)
    params.update(_defense_overrides(threshold=threshold, window=window, overlap=overlap, space=space))
    if defense != "lgs":
        params = {k: v for k, v in params.items() if k in DEFENSES[defense].param_names()}
    d = build_defense(defense, params, model)
    dev = pipeline.resolve_device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    for group in imageio.group_by_shape(images):
        x = torch.stack([images[i] for i in group]).to(dev)
        maps = d.maps(x, model)
        with torch.no_grad():
            y = d.apply(x, maps, lam_v)
        for j, i in enumerate(group):
            imageio.write_png(y[j], out_dir / f"{files[i].stem}.png")
            if save_maps and "g" in maps:
                imageio.write_png(maps["g"][j].clamp(0, 1), out_dir / "maps" / f"{files[i].stem}.png")
    out.print(f"{defense} λ={lam_v:g}: {len(files)} image(s) -> {out_dir}")


def build_classifier_stats(p):
    """A stand-in carrying the preset's normalization (no weights needed to defend files)."""
    import torch

    from patchbench.data import get_dataset_info

    info = get_dataset_info(p.data.dataset)

    class _Stats(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(info.std).view(1, -1, 1, 1))

    return _Stats()


@app.command("evaluate")
def evaluate_cmd(
    preset: PresetOpt = "demo-fmnist",
    patch: Optional[Path] = typer.Option(None, "--patch", help="Patch file (.pt); without it the clean cell is evaluated."),
    defense: str = typer.Option("lgs", "--defense", "-d", help="Defense, or none."),
    lam: str = typer.Option("2.3", "--lam", help="Smoothing factor λ >= 0."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="LGS window threshold."),
    window: Optional[int] = typer.Option(None, "--window", help="LGS window size in px."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="LGS window overlap in px."),
    space: Optional[str] = typer.Option(None, "--space", help="LGS space: pixel or normalized."),
    results: ResultsOpt = Path("results"),
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    sets: SetOpt = None,
    progress: ProgressOpt = True,
):
    """Evaluate one cell (preset × patch × defense × λ), print it and store it."""
    from patchbench import pipeline
    from patchbench.attacks.patch import Patch
    from patchbench.data import load_split
    from patchbench.defenses import DEFENSES

    p = _load(preset, sets, device, data_root, weights)
    if defense not in DEFENSES:
        raise PatchbenchError(f"unknown defense {defense!r}; known: {', '.join(DEFENSES)}")
    lam_v = _lam(lam)
    patches = []
    if patch is not None:
        pt = Patch.load(patch)
        pipeline.check_patch_fits(pt, p, str(patch))
        patches.append(pt)
    DEFENSES[defense].check_params(_defense_overrides(threshold=threshold, window=window, overlap=overlap, space=space))
    load_split(p.data.dataset, p.data.root, p.data.eval_split, p.data.image_size)
    dev, store, loaded = _model_for(p, results, progress)
    runs = pipeline.defense_runs(p, loaded.model, [defense], [lam_v],
                                 _defense_overrides(threshold=threshold, window=window, overlap=overlap, space=space))
    runs = runs[1:] if defense != "none" else runs
    rows = pipeline.run_grid(p, loaded, patches, runs, store, dev, include_clean=patch is None, progress=progress)
    _print_rows(rows)


@app.command("sweep")
def sweep(
    preset: PresetOpt = "demo-fmnist",
    defenses: Optional[str] = typer.Option(None, "--defenses", help="Comma list of defenses (default: the preset's). 'none' is always included."),
    lambdas: Optional[str] = typer.Option(None, "--lambdas", help="start:stop[:step] (step 0.4 by default; 1.5:3.5 -> 1.5,1.9,...,3.5) or a comma list; default: the preset's."),
    patches: Optional[List[str]] = typer.Option(None, "--patches", help="Patch files to evaluate (repeat or comma-separate); default: train/cached patches of the preset's attacks."),
    results: ResultsOpt = Path("results"),
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    weights: WeightsOpt = None,
    sets: SetOpt = None,
    progress: ProgressOpt = True,
):
    """Run the grid clean/attacked × (none + defenses) × λ; cached work and stored cells are reused.

    With a TOMM preset (evasion attacks): every training mode × (clean + every attack).
    """
    from patchbench import pipeline
    from patchbench.attacks.patch import Patch
    from patchbench.config import parse_lambdas
    from patchbench.data import load_split
    from patchbench.defenses import DEFENSES
    from patchbench.results import ResultStore

    p = _load(preset, sets, device, data_root, weights)
    names = None
    if defenses is not None:
        names = [n.strip() for n in defenses.split(",") if n.strip()]
        for n in names:
            if n not in DEFENSES:
                raise PatchbenchError(f"unknown defense {n!r}; known: {', '.join(DEFENSES)}")
    lams = parse_lambdas(lambdas) if lambdas is not None else None
    given = []
    for item in patches or []:
        for f in item.split(","):
            if f.strip():
                pt = Patch.load(f.strip())
                pipeline.check_patch_fits(pt, p, f.strip())
                given.append(pt)
    load_split(p.data.dataset, p.data.root, p.data.eval_split, p.data.image_size)
    if not given and p.attacks and pipeline.needs_training(p):
        load_split(p.data.dataset, p.data.root, "train", p.data.image_size)
    if p.evasion and not given:  # TOMM presets: every training mode × every evasion attack
        pipeline.check_data(p)
        dev, store = pipeline.resolve_device(p.device), ResultStore(results)
        for training in p.trainings or [p.model.train.training]:
            rows = pipeline.run_evasion_grid(p, training, store, dev, progress)
            out.print(f"{training}: {len(rows)} cells in {results / 'cells'}")
        return
    dev, store, loaded = _model_for(p, results, progress)
    patch_list = given or pipeline.ensure_patches(p, loaded, store, dev, progress=progress)
    runs = pipeline.defense_runs(p, loaded.model, names, lams)
    rows = pipeline.run_grid(p, loaded, patch_list, runs, store, dev, progress=progress)
    out.print(f"{len(rows)} cells in {results / 'cells'}")


@app.command("table")
def table(
    name: str = typer.Argument(..., help="Table to rebuild (see `patchbench list tables`), e.g. icaart2022-1."),
    results: ResultsOpt = Path("results"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Whose cells to show (default: the paper preset if stored, else the demo)."),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich, markdown, csv or latex."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table to this file."),
):
    """Rebuild a paper table from stored cells, the paper's numbers beside ours."""
    from patchbench.config import load_preset, preset_names
    from patchbench.results import ResultStore
    from patchbench.tables import TABLES, build_table, render

    if name not in TABLES:
        raise PatchbenchError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    if fmt not in ("rich", "markdown", "csv", "latex"):
        raise PatchbenchError(f"unknown format {fmt!r}; use rich, markdown, csv or latex")
    cells = ResultStore(results).load_cells()
    if cells.empty:
        raise PatchbenchError(f"no stored cells under {results}/cells; run `patchbench sweep` first")
    tab, caption = build_table(name, cells, preset)
    used = preset or tab.attrs.get("preset")
    notes = load_preset(used).notes if used in preset_names() else []
    text = render(tab, caption, fmt, notes)
    if text is not None:
        sys.stdout.write(text)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(render(tab, caption, "markdown" if fmt == "rich" else fmt, notes))


@app.command("reproduce")
def reproduce_cmd(
    paper: str = typer.Argument(..., help="Paper to reproduce: icaart2022."),
    preset_scale: str = typer.Option("demo", "--preset-scale", help="demo (Fashion-MNIST, CPU minutes) or paper (the paper's presets: GPU + ImageNet)."),
    results: ResultsOpt = Path("results"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where tables (.md) and figures (.png) go; default RESULTS/reports/PAPER-SCALE."),
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    sets: SetOpt = None,
    progress: ProgressOpt = True,
):
    """Train, sweep and report everything a paper's tables and figures need; resumable.

    A rerun reuses every cached model, patch and cell and only rebuilds the reports.
    """
    from patchbench.reproduce import reproduce

    overrides = list(sets or [])
    if device:
        overrides.append(f"device={device}")
    if data_root:
        overrides.append(f"data.root={data_root}")
    reproduce(paper, preset_scale, results, out_dir, overrides, progress)


plot_app = typer.Typer(help="Figures rebuilt from stored cells (PNG).", no_args_is_help=True)
app.add_typer(plot_app, name="plot")


@plot_app.command("lambda-curve")
def plot_lambda_curve(
    preset: PresetOpt = "demo-fmnist",
    results: ResultsOpt = Path("results"),
    attack: str = typer.Option("lavan", "--attack", help="Attack whose patch gives the attacked curve."),
    patch_px: Optional[int] = typer.Option(None, "--patch-px", help="Patch size; default: the middle stored size (the paper plots 52 of 42/52/60 px)."),
    out_file: Path = typer.Option(Path("lambda-curve.png"), "--out", "-o", help="PNG file to write."),
):
    """ICAART 2022 Fig. 5: top-1 accuracy vs λ (clean, attacked, average) for LGS / SLGS / WLGS."""
    from patchbench.plots import lambda_curve
    from patchbench.results import ResultStore

    cells = ResultStore(results).load_cells()
    if cells.empty:
        raise PatchbenchError(f"no stored cells under {results}/cells; run `patchbench sweep` first")
    out.print(f"wrote {lambda_curve(cells, preset, out_file, attack, patch_px)}")


@plot_app.command("adaptive")
def plot_adaptive(
    preset: PresetOpt = "demo-fmnist",
    results: ResultsOpt = Path("results"),
    out_file: Path = typer.Option(Path("adaptive.png"), "--out", "-o", help="PNG file to write."),
):
    """ICAART 2022 Fig. 10: success of the white-box adaptive LaVAN vs training step, per defense."""
    from patchbench.plots import adaptive_curve, adaptive_table
    from patchbench.results import ResultStore

    cells = ResultStore(results).load_cells()
    if cells.empty:
        raise PatchbenchError(f"no stored cells under {results}/cells; run `patchbench reproduce` first")
    path = adaptive_curve(cells, preset, out_file)
    out.print(adaptive_table(cells, preset).to_string(index=False))
    out.print(f"wrote {path}")


def _print_rows(rows) -> None:
    """One line per cell (no table: it must stay readable in a narrow pipe)."""
    for r in rows.itertuples():
        what = "clean" if r.condition == "clean" else f"{r.attack} {int(r.patch_px)}px -> class {int(r.target)}"
        lam = "" if r.lam is None or r.lam != r.lam else f" λ={r.lam:g}"
        asr = r.attack_success_rate
        hits = "" if asr is None or asr != asr else f"  target success {100 * asr:.1f}%"
        out.print(f"{what} | {r.defense}{lam} | accuracy [bold]{100 * r.accuracy:.2f}%[/] "
                  f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] (n={r.n}){hits} | run {r.run_id}",
                  soft_wrap=True)


def main() -> None:
    """Console entry point: every user error is one line on stderr and exit code 2."""
    try:
        rv = app(standalone_mode=False)
    except PatchbenchError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except Exception as exc:
        # Typer's (vendored) click exceptions: usage errors, bad parameters, abort
        name = type(exc).__name__
        if name == "NoArgsIsHelpError":
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(0)
        if name == "Abort":
            sys.stderr.write("aborted\n")
            sys.exit(130)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            sys.stderr.write(f"error: {' '.join(exc.format_message().split())}\n")
            sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
