"""``patchbench train-model``, ``train-patch``, ``sweep``, ``status``, ``reproduce`` and ``evaluate`` (one cell: a patch
file — PNG or tensor file — at its own or a given placement, × a defense at λ): the commands that train, evaluate and store (each parses its options, calls the job's module and prints)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from patchbench.cli import options as opt
from patchbench.errors import PatchbenchError

out = Console(soft_wrap=True)  # a result line is one line, however narrow the pipe: paths never wrap


def train_model(preset: opt.Preset = "demo-fmnist", results: opt.Results = Path("results"), device: opt.Device = None,
                data_root: opt.DataRoot = None, weights: opt.Weights = None, force: opt.TrainModelForce = False,
                training: opt.TrainModelTraining = None, nproc: opt.TrainModelNproc = 1, sets: opt.Set = None,
                progress: opt.Progress = True):
    """Train and cache the preset's classifier (checkpoint + JSON with accuracy, seed, config hash).

    For presets with pretrained torchvision weights and the raw objective this only checks that
    the weights load; other objectives fine-tune them.
    """
    from patchbench.cache.models import ensure_model, needs_training  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.runner.sweep import check_data, model_line, store_and_device  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.training import distributed  # reason: deferred: `patchbench --help` imports no torch

    p = opt.load(preset, sets, device, data_root, weights, [f"model.train.training={training}"] if training else None)
    store, dev = store_and_device(p, results)
    if needs_training(p):
        check_data(p)  # fail early, write nothing
    if nproc > 1 and not distributed.launched():
        raise typer.Exit(distributed.relaunch(nproc, sys.argv[1:], p.model.train.batch_size, dev))
    loaded = ensure_model(p, store, distributed.setup(dev), force=force, progress=progress)
    if distributed.is_main():
        out.print(model_line(p, store, loaded))


def train_patch(size: opt.TrainPatchSize, preset: opt.Preset = "demo-fmnist", attack: opt.TrainPatchAttack = "lavan",
                target: opt.TrainPatchTarget = None, steps: opt.TrainPatchSteps = None, seed: opt.TrainPatchSeed = None,
                out_file: opt.TrainPatchOutFile = None, results: opt.Results = Path("results"), device: opt.Device = None,
                data_root: opt.DataRoot = None, weights: opt.Weights = None, force: opt.TrainPatchForce = False,
                sets: opt.Set = None, progress: opt.Progress = True):
    """Train a patch against the preset's classifier (trained first if it is not cached)."""
    from patchbench.cache.models import ensure_model  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.cache.patches import attack_entry, train_patch  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.runner.patch_area import size_advice  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.runner.sweep import check_data, store_and_device  # reason: deferred: `patchbench --help` imports no torch

    p = opt.load(preset, sets, device, data_root, weights)
    cfg = attack_entry(p, attack, sizes=[size], target=target, steps=steps, seed=seed)
    check_data(p)  # fail early, write nothing
    if advice := size_advice(p, attack, size):
        Console(stderr=True, soft_wrap=True).print(advice, style="yellow", highlight=False)
    store, dev = store_and_device(p, results)
    loaded = ensure_model(p, store, dev, progress=progress)
    m = train_patch(p, cfg, size, loaded, store, dev, out=out_file, force=force, progress=progress).meta
    out.print(f"{attack} {size}px ({m['area_pct']}% of {p.data.image_size}px) target {m['target']} "
              f"({m.get('target_name')}): training success [bold]{m['train_success_rate']:.1%}[/]")


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
    from patchbench.cache.patches import with_seeds  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.store.results import parse_shard  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.runner.sweep import sweep as run_sweep  # reason: deferred: `patchbench --help` imports no torch

    parse_shard(shard)  # a malformed --shard fails before any work
    p = with_seeds(opt.load(preset, sets, device, data_root, weights, amp=amp), seeds)
    if executor is not None:
        from patchbench.runner.scaleout import ClusterOptions, sweep_on_cluster  # reason: deferred: `patchbench --help` imports no torch

        opts = ClusterOptions(partition, gpus_per_node, timeout_min=timeout_min, array_parallelism=array_parallelism)
        return out.print(sweep_on_cluster(p, results, shard, shards, executor, opts, defenses, lambdas, patches))
    rows = run_sweep(p, results, defenses, lambdas, patches, progress, shard=shard)
    out.print(f"{len(rows)} cells in {results / 'cells'}" + (f" (shard {shard})" if shard else ""))


def status_cmd(preset: opt.Preset = "demo-fmnist", results: opt.Results = Path("results"), data_root: opt.DataRoot = None,
               weights: opt.Weights = None, sets: opt.Set = None):
    """How far the preset's grid is: cells planned, done and missing (from the cached models and patches;
    nothing is trained or computed). Shards and job arrays report here as they finish."""
    from patchbench.runner.sweep import status_line  # reason: deferred: `patchbench --help` imports no torch

    out.print(status_line(opt.load(preset, sets, None, data_root, weights), results))


def reproduce_cmd(paper: opt.ReproducePaper, preset_scale: opt.ReproducePresetScale = "demo", results: opt.Results = Path("results"),
                  out_dir: opt.ReproduceOutDir = None, device: opt.Device = None, data_root: opt.DataRoot = None,
                  amp: opt.Amp = None, sets: opt.Set = None, progress: opt.Progress = True, allow_cpu: opt.AllowCpu = False,
                  only: opt.ReproduceOnly = None):
    """Train, sweep and report everything a paper's (or all papers') tables and figures need; resumable.

    A preflight (GPU, datasets, weight files, disk) first names each missing piece with its fix and writes
    nothing. A rerun reuses every cached model, patch and cell; `patchbench report` then gathers them.
    """
    from patchbench.config import option_overrides  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.runner.reproduce import reproduce  # reason: deferred: `patchbench --help` imports no torch

    reproduce(paper, preset_scale, results, out_dir, option_overrides(sets, device=device, data_root=data_root, amp=amp), progress, allow_cpu=allow_cpu,
              only=only)


def evaluate_cmd(preset: opt.Preset = "demo-fmnist", patch: opt.EvaluatePatch = None, placement: opt.EvaluatePlacement = None,
                 margin: opt.EvaluateMargin = None, region: opt.EvaluateRegion = None,
                 placement_seed: opt.EvaluatePlacementSeed = None, defense: opt.EvaluateDefense = "lgs", lam: opt.Lam = "2.3",
                 params: opt.Param = None, results: opt.Results = Path("results"), device: opt.Device = None,
                 data_root: opt.DataRoot = None, weights: opt.Weights = None, amp: opt.Amp = None, sets: opt.Set = None,
                 progress: opt.Progress = True):
    """Evaluate one cell (preset × patch × defense × λ), print it and store it."""
    from patchbench.config import PatchFile, parse_lambda, parse_params  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.runner.sweep import cell_lines, evaluate_one  # reason: deferred: `patchbench --help` imports no torch

    if patch is None and any(v is not None for v in (placement, margin, region, placement_seed)):
        raise PatchbenchError("--placement, --margin, --region and --placement-seed place a --patch; none was given")
    entry = None if patch is None else PatchFile(str(patch), placement, margin, region, placement_seed)
    p = opt.load(preset, sets, device, data_root, weights, amp=amp)
    for line in cell_lines(evaluate_one(p, results, entry, defense, parse_lambda(lam), parse_params(params), progress)):
        out.print(line)
