"""patchbench command line: each command parses its options, calls one function of the layer that
does the job (:mod:`patchbench.run`, :mod:`patchbench.cache`, :mod:`patchbench.reporting`, ...)
and prints. No experiment logic lives here.

Every error a user can cause (unknown names, malformed values, missing or corrupt files) ends in
one line ``error: ...`` on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from patchbench import __version__
from patchbench.errors import PatchbenchError
from patchbench.plugins import plugin_names

app = typer.Typer(
    help="Benchmark localized adversarial attacks (adversarial patches) and their defenses.\n\n"
         "Train a classifier and patches, sweep attack × defense × λ into parquet, rebuild the papers' tables.",
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
)
out = Console()

# options shared by several commands (Typer's Annotated style)
PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="Preset name (see `patchbench list presets`) or a preset YAML file.")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Results directory: cells/ and predictions/ (parquet), artifacts/ (cached models, patches).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda[:i]; default: the preset's (auto = cuda if available).")]
DataRootOpt = Annotated[Optional[str], typer.Option("--data-root", help="Dataset directory (overrides the preset and the dataset's search order).")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="Model weights: a torchvision weights name (DEFAULT, IMAGENET1K_V1) or a state-dict file.")]
SetOpt = Annotated[Optional[List[str]], typer.Option("--set", help="Override any preset field, e.g. --set data.eval_n=500 or --set attacks.0.steps=50 (repeatable).")]
ParamOpt = Annotated[Optional[List[str]], typer.Option("--param", help="Defense parameter key=value (repeatable), e.g. --param window=15 --param space=normalized; see `patchbench list defenses`.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars on long steps.")]
AmpOpt = Annotated[Optional[str], typer.Option("--amp", help="bf16 or fp16: the classifier's prediction passes in evaluation under torch.autocast (attacks, saliency and training stay fp32); stored as separate cells.")]
LamOpt = Annotated[str, typer.Option("--lam", help="Smoothing factor λ >= 0 (ignored by defenses without one).")]


def _version(value: bool) -> None:
    if value:
        out.print(f"patchbench {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False):
    """Benchmark localized adversarial attacks (adversarial patches) and their defenses."""
    if ctx.invoked_subcommand is None:  # `patchbench` alone: the help, exit 0
        out.print(ctx.get_help(), highlight=False)
        raise typer.Exit()


def _load(preset: str, sets=None, device=None, data_root=None, weights=None, extra=None, amp=None):
    from patchbench.config import option_overrides
    from patchbench.presets import load_preset

    return load_preset(preset, option_overrides(sets, device=device, data_root=data_root, weights=weights, amp=amp)
                       + list(extra or []))


def _store_device(p, results: Path):
    from patchbench.devices import resolve_device
    from patchbench.results import ResultStore

    return ResultStore(results), resolve_device(p.device)


@app.command("list")
def list_cmd(what: str = typer.Argument(..., help="models, attacks, defenses, datasets, presets, papers, tables, figures, trainings, or volumetric (BMVC 2023 3-D parameter counts vs the paper's).")):
    """List what is registered."""
    from patchbench.catalog import catalog

    Console(width=max(out.width, 160)).print(catalog(what))  # wide tables stay whole when piped


@app.command("train-model")
def train_model(preset: PresetOpt = "demo-fmnist", results: ResultsOpt = Path("results"), device: DeviceOpt = None,
                data_root: DataRootOpt = None, weights: WeightsOpt = None,
                force: bool = typer.Option(False, "--force", help="Retrain even if a cached checkpoint exists."),
                training: Optional[str] = typer.Option(None, "--training", help="Training objective: raw, madry, madry+aad, alp or alp+aad (default: the preset's). Checkpoints every epoch; a killed run resumes."),
                nproc: int = typer.Option(1, "--nproc", min=1, help="Train data-parallel in this many processes (runs itself under torchrun: gloo on CPU, one GPU each with NCCL). The same as `torchrun --nproc_per_node K -m patchbench train-model ...`."),
                sets: SetOpt = None, progress: ProgressOpt = True):
    """Train and cache the preset's classifier (checkpoint + JSON with accuracy, seed, config hash).

    For presets with pretrained torchvision weights and the raw objective this only checks that
    the weights load; other objectives fine-tune them.
    """
    from patchbench.cache.models import ensure_model, model_path, needs_training
    from patchbench.run import check_data
    from patchbench.training import distributed

    p = _load(preset, sets, device, data_root, weights, [f"model.train.training={training}"] if training else None)
    store, dev = _store_device(p, results)
    if needs_training(p):
        check_data(p)  # fail early, write nothing
    if nproc > 1 and not distributed.launched():
        raise typer.Exit(distributed.relaunch(nproc, sys.argv[1:], p.model.train.batch_size, dev))
    loaded = ensure_model(p, store, distributed.setup(dev), force=force, progress=progress)
    if not distributed.is_main():
        return
    m = loaded.meta
    if needs_training(p):
        out.print(f"{p.model.arch}: test accuracy [bold]{m['test_accuracy']:.2%}[/] on {m['test_n']} images, "
                  f"seed {m['seed']}, config {m['config_hash']} -> {model_path(p, store)}")
    else:
        out.print(f"{p.model.arch}: weights {m['weights']} loaded (model id {loaded.model_id}); nothing to train")


@app.command("train-patch")
def train_patch(preset: PresetOpt = "demo-fmnist",
                attack: str = typer.Option("lavan", "--attack", "-a", help="Patch attack (see `patchbench list attacks`)."),
                size: int = typer.Option(..., "--size", "-s", help="Patch side in pixels, at the preset's image size (e.g. 52 at 400 px)."),
                target: Optional[int] = typer.Option(None, "--target", "-t", help="Target class index (default: the preset's)."),
                steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps (default: the preset's)."),
                seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of the patch init and batches."),
                out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the patch here (.pt, plus .png and .json beside it); default: cached under <results>/artifacts/patches."),
                results: ResultsOpt = Path("results"), device: DeviceOpt = None, data_root: DataRootOpt = None,
                weights: WeightsOpt = None, force: bool = typer.Option(False, "--force", help="Retrain even if the cached patch exists."),
                sets: SetOpt = None, progress: ProgressOpt = True):
    """Train a patch against the preset's classifier (trained first if it is not cached)."""
    from patchbench.cache.models import ensure_model
    from patchbench.cache.patches import attack_entry, train_patch
    from patchbench.run import check_data

    p = _load(preset, sets, device, data_root, weights)
    cfg = attack_entry(p, attack, sizes=[size], target=target, steps=steps, seed=seed)
    check_data(p)  # fail early, write nothing
    store, dev = _store_device(p, results)
    loaded = ensure_model(p, store, dev, progress=progress)
    m = train_patch(p, cfg, size, loaded, store, dev, out=out_file, force=force, progress=progress).meta
    out.print(f"{attack} {size}px ({m['area_pct']}% of {p.data.image_size}px) target {m['target']} "
              f"({m.get('target_name')}): training success [bold]{m['train_success_rate']:.1%}[/]")


@app.command("defend")
def defend(inputs: List[Path] = typer.Argument(..., help="PNG/JPEG files or directories (every image inside)."),
           out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for the defended PNGs (same file stems)."),
           defense: str = typer.Option("lgs", "--defense", "-d", help="Defense (see `patchbench list defenses`)."),
           lam: LamOpt = "2.3", params: ParamOpt = None,
           preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Take the defense's parameters and the normalization from this preset."),
           save_maps: bool = typer.Option(False, "--save-maps", help="Also write the gradient map g(x) as DIR/maps/<stem>.png."),
           device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:i].")):
    """Defend image files: write T(x) for each input as PNG, nothing else changed."""
    from patchbench import imageio
    from patchbench.config import parse_lambda, parse_params
    from patchbench.defend import defend_files
    from patchbench.devices import resolve_device

    lam_v, overrides = parse_lambda(lam), parse_params(params)
    files = imageio.collect_images(inputs)
    p = _load(preset) if preset else None
    n = defend_files(files, out_dir, defense, lam_v, overrides, p, save_maps, resolve_device(device))
    out.print(f"{defense} λ={lam_v:g}: {n} image(s) -> {out_dir}")


@app.command("background-attack")
def background_attack_cmd(
        images: Path = typer.Option(..., "--images", help="Folder of the images (PNG/JPEG)."),
        boxes: Path = typer.Option(..., "--boxes", help="CSV with columns file,label,x0,y0,x1,y1: the object's box per image (kept unaltered)."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Directory for the adversarial PNGs and background-attack.md/.csv."),
        model: str = typer.Option("inception_v3", "--model", help="A torchvision ImageNet model (see `patchbench list models`)."),
        weights: str = typer.Option("DEFAULT", "--weights", help="torchvision weights name, a state-dict file, or none (random-init stand-in)."),
        dataset: str = typer.Option("imagenet", "--dataset", help="Whose normalization and classes the model uses."),
        image_size: int = typer.Option(299, "--image-size", help="Model input size (Inception-v3: 299)."),
        eps: float = typer.Option(0.3, "--eps", help="L-inf bound on background pixels, [0, 1] scale."),
        steps: int = typer.Option(100, "--steps", help="PGD steps."),
        step_size: Optional[float] = typer.Option(None, "--step-size", help="PGD step (default 2.5·eps/steps)."),
        seed: int = typer.Option(0, "--seed"), batch_size: int = typer.Option(8, "--batch-size"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:i].")):
    """AdvML 2019 Sec. 3 (Tables 1-2): PGD on the background only (ε = 0 inside each image's box)
    against a pretrained classifier; writes the adversarial images and the natural-vs-adversarial table."""
    from patchbench import background

    out.print(background.run(images, boxes, out_dir, model, weights, dataset, image_size, eps, steps, step_size, seed,
                             batch_size, device))


@app.command("evaluate")
def evaluate_cmd(preset: PresetOpt = "demo-fmnist",
                 patch: Optional[Path] = typer.Option(None, "--patch", help="Patch file (.pt); without it the clean cell is evaluated."),
                 defense: str = typer.Option("lgs", "--defense", "-d", help="Defense, or none."),
                 lam: LamOpt = "2.3", params: ParamOpt = None, results: ResultsOpt = Path("results"),
                 device: DeviceOpt = None, data_root: DataRootOpt = None, weights: WeightsOpt = None,
                 amp: AmpOpt = None, sets: SetOpt = None, progress: ProgressOpt = True):
    """Evaluate one cell (preset × patch × defense × λ), print it and store it."""
    from patchbench.config import parse_lambda, parse_params
    from patchbench.run import evaluate_one

    p = _load(preset, sets, device, data_root, weights, amp=amp)
    _print_rows(evaluate_one(p, results, patch, defense, parse_lambda(lam), parse_params(params), progress))


@app.command("sweep")
def sweep(preset: PresetOpt = "demo-fmnist",
          defenses: Optional[str] = typer.Option(None, "--defenses", help="Comma list of defenses (default: the preset's). 'none' is always included."),
          lambdas: Optional[str] = typer.Option(None, "--lambdas", help="start:stop[:step] (step 0.4 by default; 1.5:3.5 -> 1.5,1.9,...,3.5) or a comma list; default: the preset's."),
          patches: Optional[List[str]] = typer.Option(None, "--patches", help="Patch files to evaluate (repeat or comma-separate); default: the preset's attacks, trained or cached."),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma list of patch seeds: every patch is trained once per seed (default: the preset's)."),
          shard: Optional[str] = typer.Option(None, "--shard", help="i/n: compute only slice i of n of the grid's missing cells (partitioned by run id; run shards in parallel, e.g. as a job array, into one results directory)."),
          executor: Optional[str] = typer.Option(None, "--executor", help="slurm: submit --shards jobs as a SLURM array through submitit; local: the same jobs as local processes."),
          shards: int = typer.Option(2, "--shards", help="Number of shards (jobs) with --executor."),
          partition: Optional[str] = typer.Option(None, "--partition", help="SLURM partition (--executor slurm)."),
          gpus_per_node: int = typer.Option(0, "--gpus-per-node", help="GPUs per job (--executor slurm)."),
          timeout_min: int = typer.Option(240, "--timeout-min", help="Time limit per job in minutes (--executor)."),
          array_parallelism: int = typer.Option(64, "--array-parallelism", help="At most this many jobs at once (--executor slurm)."),
          results: ResultsOpt = Path("results"), device: DeviceOpt = None, data_root: DataRootOpt = None,
          weights: WeightsOpt = None, amp: AmpOpt = None, sets: SetOpt = None, progress: ProgressOpt = True):
    """Run the preset's grid; cached models, patches and stored cells are reused.

    patch-defense presets: clean/attacked × (none + defenses) × λ. evasion presets: every training
    objective × (clean + every evasion attack). With --shard, every shard trains or loads the same
    cached models and patches (deterministic), then computes its own slice of the cells.
    """
    from patchbench.cache.patches import with_seeds
    from patchbench.results import parse_shard
    from patchbench.run import sweep as run_sweep

    parse_shard(shard)  # a malformed --shard fails before any work
    p = with_seeds(_load(preset, sets, device, data_root, weights, amp=amp), seeds)
    if executor is not None:
        from patchbench.scaleout import ClusterOptions, sweep_on_cluster

        opts = ClusterOptions(partition=partition, gpus_per_node=gpus_per_node, timeout_min=timeout_min,
                              array_parallelism=array_parallelism)
        out.print(sweep_on_cluster(p, results, shard, shards, executor, opts, defenses, lambdas, patches))
        return
    rows = run_sweep(p, results, defenses, lambdas, patches, progress, shard=shard)
    out.print(f"{len(rows)} cells in {results / 'cells'}" + (f" (shard {shard})" if shard else ""))


@app.command("status")
def status_cmd(preset: PresetOpt = "demo-fmnist", results: ResultsOpt = Path("results"), data_root: DataRootOpt = None,
               weights: WeightsOpt = None, sets: SetOpt = None):
    """How far the preset's grid is: cells planned, done and missing (from the cached models and patches;
    nothing is trained or computed). Shards and job arrays report here as they finish."""
    from patchbench.run import status_line

    out.print(status_line(_load(preset, sets, None, data_root, weights), results))


@app.command("table")
def table(name: str = typer.Argument(..., help="Table to rebuild (see `patchbench list tables`)."),
          results: ResultsOpt = Path("results"),
          preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Whose cells to show (default: the paper preset if stored, else the demo)."),
          fmt: str = typer.Option("rich", "--format", "-f", help="rich, markdown, csv or latex."),
          out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table to this file.")):
    """Rebuild a paper table from stored cells, the paper's numbers beside ours."""
    from patchbench.reporting import table_report

    text = table_report(name, results, preset, fmt, out_file)
    if text is not None:
        sys.stdout.write(text)


@app.command("reproduce")
def reproduce_cmd(paper: str = typer.Argument(..., help="Paper to reproduce (see `patchbench list papers`)."),
                  preset_scale: str = typer.Option("demo", "--preset-scale", help="demo (Fashion-MNIST, CPU minutes) or paper (the paper's presets: GPU + the paper's data)."),
                  results: ResultsOpt = Path("results"),
                  out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where tables (.md) and figures (.png) go; default RESULTS/reports/PAPER-SCALE."),
                  device: DeviceOpt = None, data_root: DataRootOpt = None, amp: AmpOpt = None, sets: SetOpt = None,
                  progress: ProgressOpt = True):
    """Train, sweep and report everything a paper's tables and figures need; resumable.

    A rerun reuses every cached model, patch and cell and only rebuilds the reports.
    """
    from patchbench.config import option_overrides
    from patchbench.reproduce import reproduce

    reproduce(paper, preset_scale, results, out_dir, option_overrides(sets, device=device, data_root=data_root, amp=amp), progress)


@app.command("plot")
def plot(name: str = typer.Argument(..., help="Figure (see `patchbench list figures`), e.g. lambda-curve or adaptive."),
         preset: PresetOpt = "demo-fmnist", results: ResultsOpt = Path("results"),
         out_file: Path = typer.Option(Path("figure.png"), "--out", "-o", help="PNG file to write."),
         params: Annotated[Optional[List[str]], typer.Option("--param", help="Figure option key=value, e.g. --param patch_px=8.")] = None):
    """Draw a paper figure from stored cells (PNG)."""
    from patchbench.reporting import draw_figure
    from patchbench.config import parse_params

    out.print(f"wrote {draw_figure(name, preset, results, out_file, parse_params(params))}")


def _print_rows(rows) -> None:
    """One line per cell (no table: it must stay readable in a narrow pipe)."""
    for r in rows.itertuples():
        what = "clean" if r.condition == "clean" else f"{r.attack} {int(r.patch_px)}px -> class {int(r.target)}"
        lam = "" if r.lam is None or r.lam != r.lam else f" λ={r.lam:g}"
        asr = r.attack_success_rate
        hits = "" if asr is None or asr != asr else f"  target success {100 * asr:.1f}%"
        out.print(f"{what} | {r.defense}{lam} | accuracy [bold]{100 * r.accuracy:.2f}%[/] "
                  f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] (n={r.n}){hits} | run {r.run_id}", soft_wrap=True)


def main() -> None:
    """Console entry point: every user error is one line on stderr and exit code 2."""
    try:
        if plugin_names():  # plugins register when the paper registry is built: every command then knows them
            import patchbench.papers  # noqa: F401
        rv = app(standalone_mode=False)
    except PatchbenchError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors and bad parameters
        sys.stderr.write(f"error: {' '.join(exc.format_message().split())}\n")
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
