"""Commands on patch files:
``patchbench evaluate`` (one cell: a patch file — PNG or tensor file — at its own or a given placement,
× a defense at λ) and ``patchbench export-patch`` (a cached patch as an exact PNG plus a JSON sidecar)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from patchbench.errors import PatchbenchError

from patchbench.cli import options as opt

out = Console(soft_wrap=True)


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


def export_patch_cmd(out_file: opt.ExportOut, preset: opt.Preset = "demo-fmnist", attack: opt.ExportAttack = None,
                     size: opt.ExportSize = None, seed: opt.ExportSeed = None, target: opt.ExportTarget = None,
                     from_file: opt.ExportFrom = None, results: opt.Results = Path("results"), device: opt.Device = None,
                     weights: opt.Weights = None, sets: opt.Set = None):
    """Export a cached patch: OUT.png (the patch at its size; it carries the exact float32 patch, so
    `evaluate --patch OUT.png` reproduces the stored cells) and OUT.json (attack, target, size, model and
    preset hashes, seed, success, git SHA). Nothing is trained."""
    from patchbench.cache.export import cached_patch, export, export_cached_file  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.devices import resolve_device  # reason: deferred: `patchbench --help` imports no torch

    if from_file is not None:
        if attack is not None or size is not None:
            raise PatchbenchError("--from exports one artifact; --attack/--size pick one from a preset's cache instead")
        png, js = export_cached_file(from_file, out_file, results)
    else:
        if attack is None or size is None:
            raise PatchbenchError("export-patch needs --attack and --size (with --preset), or --from FILE.pt")
        p = opt.load(preset, sets, device, None, weights)
        png, js = export(cached_patch(p, results, attack, size, seed, target, resolve_device(device or "cpu")), out_file, p)
    out.print(f"wrote {png} and {js}")
