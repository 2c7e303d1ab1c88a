"""patchbench command line: each command parses its options (declared in :mod:`.cli_options`), calls the layer that does
the job and prints (named plugins load first). A user error is one line ``error: ...`` on stderr, exit code 2, nothing written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from patchbench import __version__, faults
from patchbench import cli_options as opt
from patchbench.cli_more import COMMANDS
from patchbench.cli_patches import evaluate_cmd, export_patch_cmd
from patchbench.plugins import plugin_names

app = typer.Typer(
    help="Benchmark localized adversarial attacks (adversarial patches) and their defenses.\n\n"
         "Train a classifier and patches, sweep attack × defense × λ into parquet, rebuild the papers' tables.",
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
)
out = Console(soft_wrap=True)  # a result line is one line, however narrow the pipe: paths never wrap


def _version(value: bool) -> None:
    if value:
        out.print(f"patchbench {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                                  help="Print the version and exit.")] = False,
          deterministic: opt.Deterministic = False, compile_: opt.Compile = False, debug: opt.Debug = False):
    """Benchmark localized adversarial attacks (adversarial patches) and their defenses."""
    faults.debug = debug
    if compile_:
        from patchbench.defenses import compiling

        compiling.enable()
    if deterministic:
        from patchbench.devices import strict_determinism

        strict_determinism()
    if ctx.invoked_subcommand is None:  # `patchbench` alone: the help, exit 0
        out.print(ctx.get_help(), highlight=False)
        raise typer.Exit()


def _load(preset: str, sets=None, device=None, data_root=None, weights=None, extra=None, amp=None):
    from patchbench.config import option_overrides
    from patchbench.presets import load_preset

    return load_preset(preset, option_overrides(sets, device=device, data_root=data_root, weights=weights, amp=amp) + list(extra or []))


@app.command("list")
def list_cmd(what: opt.ListWhat):
    """List what is registered."""
    from patchbench.catalog import catalog

    Console(width=max(out.width, 160)).print(catalog(what))  # wide tables stay whole when piped


@app.command("train-model")
def train_model(preset: opt.Preset = "demo-fmnist", results: opt.Results = Path("results"), device: opt.Device = None,
                data_root: opt.DataRoot = None, weights: opt.Weights = None, force: opt.TrainModelForce = False,
                training: opt.TrainModelTraining = None, nproc: opt.TrainModelNproc = 1, sets: opt.Set = None,
                progress: opt.Progress = True):
    """Train and cache the preset's classifier (checkpoint + JSON with accuracy, seed, config hash).

    For presets with pretrained torchvision weights and the raw objective this only checks that
    the weights load; other objectives fine-tune them.
    """
    from patchbench.cache.models import ensure_model, needs_training
    from patchbench.run import check_data, model_line, store_and_device
    from patchbench.training import distributed

    p = _load(preset, sets, device, data_root, weights, [f"model.train.training={training}"] if training else None)
    store, dev = store_and_device(p, results)
    if needs_training(p):
        check_data(p)  # fail early, write nothing
    if nproc > 1 and not distributed.launched():
        raise typer.Exit(distributed.relaunch(nproc, sys.argv[1:], p.model.train.batch_size, dev))
    loaded = ensure_model(p, store, distributed.setup(dev), force=force, progress=progress)
    if distributed.is_main():
        out.print(model_line(p, store, loaded))


@app.command("train-patch")
def train_patch(size: opt.TrainPatchSize, preset: opt.Preset = "demo-fmnist", attack: opt.TrainPatchAttack = "lavan",
                target: opt.TrainPatchTarget = None, steps: opt.TrainPatchSteps = None, seed: opt.TrainPatchSeed = None,
                out_file: opt.TrainPatchOutFile = None, results: opt.Results = Path("results"), device: opt.Device = None,
                data_root: opt.DataRoot = None, weights: opt.Weights = None, force: opt.TrainPatchForce = False,
                sets: opt.Set = None, progress: opt.Progress = True):
    """Train a patch against the preset's classifier (trained first if it is not cached)."""
    from patchbench.cache.models import ensure_model
    from patchbench.cache.patches import attack_entry, train_patch
    from patchbench.patch_area import size_advice
    from patchbench.run import check_data, store_and_device

    p = _load(preset, sets, device, data_root, weights)
    cfg = attack_entry(p, attack, sizes=[size], target=target, steps=steps, seed=seed)
    check_data(p)  # fail early, write nothing
    if advice := size_advice(p, attack, size):
        Console(stderr=True, soft_wrap=True).print(advice, style="yellow", highlight=False)
    store, dev = store_and_device(p, results)
    loaded = ensure_model(p, store, dev, progress=progress)
    m = train_patch(p, cfg, size, loaded, store, dev, out=out_file, force=force, progress=progress).meta
    out.print(f"{attack} {size}px ({m['area_pct']}% of {p.data.image_size}px) target {m['target']} "
              f"({m.get('target_name')}): training success [bold]{m['train_success_rate']:.1%}[/]")


@app.command("defend")
def defend(inputs: opt.DefendInputs, out_dir: opt.DefendOutDir, defense: opt.DefendDefense = "lgs", lam: opt.Lam = "2.3",
           params: opt.Param = None, preset: opt.DefendPreset = None, save_maps: opt.DefendSaveMaps = False,
           device: opt.DefendDevice = "auto"):
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


@app.command("sweep")
def sweep(preset: opt.Preset = "demo-fmnist", defenses: opt.SweepDefenses = None, lambdas: opt.SweepLambdas = None,
          patches: opt.SweepPatches = None, seeds: opt.SweepSeeds = None,
          shard: opt.Shard = None, executor: opt.Executor = None, shards: opt.Shards = 2,
          partition: opt.Partition = None, gpus_per_node: opt.GpusPerNode = 0, timeout_min: opt.TimeoutMin = 240,
          array_parallelism: opt.ArrayParallelism = 64, results: opt.Results = Path("results"), device: opt.Device = None, data_root: opt.DataRoot = None,
          weights: opt.Weights = None, amp: opt.Amp = None, sets: opt.Set = None, progress: opt.Progress = True):
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

        opts = ClusterOptions(partition, gpus_per_node, timeout_min=timeout_min, array_parallelism=array_parallelism)
        return out.print(sweep_on_cluster(p, results, shard, shards, executor, opts, defenses, lambdas, patches))
    rows = run_sweep(p, results, defenses, lambdas, patches, progress, shard=shard)
    out.print(f"{len(rows)} cells in {results / 'cells'}" + (f" (shard {shard})" if shard else ""))


@app.command("status")
def status_cmd(preset: opt.Preset = "demo-fmnist", results: opt.Results = Path("results"), data_root: opt.DataRoot = None,
               weights: opt.Weights = None, sets: opt.Set = None):
    """How far the preset's grid is: cells planned, done and missing (from the cached models and patches;
    nothing is trained or computed). Shards and job arrays report here as they finish."""
    from patchbench.run import status_line

    out.print(status_line(_load(preset, sets, None, data_root, weights), results))


@app.command("table")
def table(name: opt.TableName, results: opt.Results = Path("results"), preset: opt.TablePreset = None, fmt: opt.TableFmt = "rich",
          out_file: opt.TableOutFile = None):
    """Rebuild a paper table from stored cells, the paper's numbers beside ours."""
    from patchbench.reporting import table_report

    sys.stdout.write(table_report(name, results, preset, fmt, out_file) or "")  # rich: printed already


@app.command("reproduce")
def reproduce_cmd(paper: opt.ReproducePaper, preset_scale: opt.ReproducePresetScale = "demo", results: opt.Results = Path("results"),
                  out_dir: opt.ReproduceOutDir = None, device: opt.Device = None, data_root: opt.DataRoot = None,
                  amp: opt.Amp = None, sets: opt.Set = None, progress: opt.Progress = True, allow_cpu: opt.AllowCpu = False):
    """Train, sweep and report everything a paper's (or all papers') tables and figures need; resumable.

    A preflight (GPU, datasets, weight files, disk) first names each missing piece with its fix and writes
    nothing. A rerun reuses every cached model, patch and cell; `patchbench report` then gathers them.
    """
    from patchbench.config import option_overrides
    from patchbench.reproduce import reproduce

    reproduce(paper, preset_scale, results, out_dir, option_overrides(sets, device=device, data_root=data_root, amp=amp), progress, allow_cpu=allow_cpu)


@app.command("report")
def report_cmd(preset_scale: opt.ReproducePresetScale = "demo", results: opt.Results = Path("results"), out_dir: opt.ReportOutDir = None):
    """Write RESULTS/SCALE/report.html (one self-contained page) and REPORT.md: every paper's tables (ours,
    the paper's, Δ, intervals), figures, provenance and known deviations, from the stored cells."""
    from patchbench.report import write_report

    out.print("wrote " + ", ".join(str(f) for f in write_report(results, preset_scale, out_dir)))


@app.command("plot")
def plot(name: opt.PlotName, preset: opt.Preset = "demo-fmnist", results: opt.Results = Path("results"),
         out_file: opt.PlotOutFile = Path("figure.png"), params: opt.PlotParams = None):
    """Draw a paper figure from stored cells (PNG)."""
    from patchbench.config import parse_params
    from patchbench.reporting import draw_figure

    out.print(f"wrote {draw_figure(name, preset, results, out_file, parse_params(params))}")


for _name, _command in COMMANDS.items():  # audit, background-attack, leaderboard
    app.command(_name)(_command)
app.command("evaluate")(evaluate_cmd)
app.command("export-patch")(export_patch_cmd)


def main() -> None:
    """Console entry point: a user error or a fault (disk full, permission lost, Ctrl-C, SIGTERM) ends in one line
    on stderr, exit 2 (128 + the signal for an interrupt); ``--debug`` adds the traceback (:mod:`patchbench.faults`)."""
    sys.exit(faults.run(_command))


def _command():
    if plugin_names():  # plugins register when the paper registry is built: every command then knows them
        import patchbench.papers  # noqa: F401
    return app(standalone_mode=False)


if __name__ == "__main__":
    main()
