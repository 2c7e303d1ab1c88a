"""``patchbench defend``, ``background-attack`` and ``export-patch``: commands that read or write files a user keeps — image
files defended or attacked (:mod:`patchbench.imagefiles`), a cached patch exported as an exact PNG plus a JSON sidecar."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from patchbench.cli import options as opt
from patchbench.errors import PatchbenchError

out = Console(soft_wrap=True)  # a result line is one line, however narrow the pipe: paths never wrap


def defend(inputs: opt.DefendInputs, out_dir: opt.DefendOutDir, defense: opt.DefendDefense = "lgs", lam: opt.Lam = "2.3",
           params: opt.Param = None, preset: opt.DefendPreset = None, save_maps: opt.DefendSaveMaps = False,
           device: opt.AutoDevice = "auto"):
    """Defend image files: write T(x) for each input as PNG, nothing else changed."""
    from patchbench.imagefiles import imageio  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.config import parse_lambda, parse_params  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.imagefiles.defend import defend_files  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.devices import resolve_device  # reason: deferred: `patchbench --help` imports no torch

    lam_v, overrides = parse_lambda(lam), parse_params(params)
    files = imageio.collect_images(inputs)
    p = opt.load(preset) if preset else None
    n = defend_files(files, out_dir, defense, lam_v, overrides, p, save_maps, resolve_device(device))
    out.print(f"{defense} λ={lam_v:g}: {n} image(s) -> {out_dir}")


def background_attack_cmd(
        images: opt.BgImages, boxes: opt.BgBoxes, out_dir: opt.BgOutDir, model: opt.BgModel = "inception_v3",
        weights: opt.BgWeights = "DEFAULT", dataset: opt.BgDataset = "imagenet", image_size: opt.BgImageSize = 299,
        eps: opt.BgEps = 0.3, steps: opt.BgSteps = 100, step_size: opt.BgStepSize = None, seed: opt.BgSeed = 0,
        batch_size: opt.BgBatchSize = 8, device: opt.AutoDevice = "auto"):
    """AdvML 2019 Sec. 3 (Tables 1-2): PGD on the background only (ε = 0 inside each image's box)
    against a pretrained classifier; writes the adversarial images and the natural-vs-adversarial table."""
    from patchbench.imagefiles import background  # reason: deferred: `patchbench --help` imports no torch

    out.print(background.run(images, boxes, out_dir, model, weights, dataset, image_size, eps, steps, step_size, seed,
                             batch_size, device))


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
