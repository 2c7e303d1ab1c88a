"""The ``imagenet-patch-transfer`` experiment: ImageNet-Patch's published patches (Pintor et al. 2023),
applied as published, against each torchvision model of the preset × every defense.

Per preset (``imagenet_patch:`` section, :class:`ImageNetPatchSection`): the published file is read
without running code (:func:`patchbench.api.read_imagenet_patch`), each chosen patch cropped to its
50 px box and placed as the repository's ``ApplyPatch`` places it — centred, then a random rotation
(±45°), translation (±0.2 of the side, whole pixels) and scale (U(0.5, 1)) per image
(:class:`patchbench.api.AffinePlacement`). Then per model of ``models``: the classifier (the preset's
weights, e.g. torchvision's DEFAULT), and clean plus the patched images × (no defense + each
defense × λ) through the engine: accuracy, and the targeted success rate (prediction = the patch's
target class, on images of other classes). No patch is trained: the patches transfer (the paper
optimised them on an ensemble of other models).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from patchbench.api import (
    MODELS, AffinePlacement, Column, Condition, Patch, PatchbenchError, Preset, ResultStore, check, console, declare_columns,
    defense_runs, ensure_model, evaluate_conditions, find_imagenet_patch, get_dataset_info, is_int, is_number,
    read_imagenet_patch,
)

declare_columns("imagenet_patch2023", Column("patch_index", "int", patch_meta="patch_index"))
ATTACK = "imagenet-patch"


@dataclass(frozen=True)
class ImageNetPatchSection:
    """The ``imagenet_patch:`` preset section."""

    file: str | None = None  # the published imagenet_patch.gz (null: $PATCHBENCH_IMAGENET_PATCH, $PATCHBENCH_DATA, the cache)
    models: list[str] = field(default_factory=list)  # torchvision architectures (empty: model.arch)
    patches: list[int] = field(default_factory=list)  # indices into the file's patches (empty: every one)
    translate: float = 0.2  # the repository's ApplyPatch ranges (README): translation_range=(.2, .2),
    rotation: float = 45.0  # rotation_range=45,
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.0])  # scale_range=(0.5, 1)
    seed: int = 0  # image i's transform is drawn from (seed, i)


def section(preset: Preset) -> ImageNetPatchSection:
    return preset.extra.get("imagenet_patch") or ImageNetPatchSection()


def check_section(preset: Preset) -> None:
    s = section(preset)
    where = "imagenet_patch"
    for arch in s.models:
        check(arch in MODELS and MODELS[arch].pretrained,
              f"{where}.models: {arch!r} is not a torchvision model; known: {', '.join(n for n in MODELS if MODELS[n].pretrained)}")
    check(all(is_int(i) and i >= 0 for i in s.patches) and len(set(s.patches)) == len(s.patches),
          f"{where}.patches must be distinct patch indices >= 0, got {s.patches!r}")
    check(is_int(s.seed), f"{where}.seed must be an integer, got {s.seed!r}")
    check(isinstance(s.scale_range, list) and len(s.scale_range) == 2 and all(is_number(v) for v in s.scale_range),
          f"{where}.scale_range must be [lo, hi], got {s.scale_range!r}")
    placement(s)  # the ranges, checked
    check(preset.data.dataset == "imagenet", f"{where}: the patches target ImageNet classes; data.dataset is {preset.data.dataset!r}")
    check(not preset.attacks and not preset.evasion and not preset.trainings,
          f"preset {preset.name}: experiment imagenet-patch-transfer applies the published patches; it takes no attacks, "
          "evasion or trainings")


def placement(s: ImageNetPatchSection) -> AffinePlacement:
    return AffinePlacement(float(s.translate), float(s.rotation), tuple(float(v) for v in s.scale_range), int(s.seed))


def architectures(preset: Preset) -> list[str]:
    return list(section(preset).models) or [preset.model.arch]


def for_arch(preset: Preset, arch: str) -> Preset:
    return replace(preset, model=replace(preset.model, arch=arch))


def published_patches(preset: Preset) -> list[Patch]:
    """The file's chosen patches, at the published placement, named for the cells."""
    s = section(preset)
    path = find_imagenet_patch(s.file)
    data = read_imagenet_patch(path)
    size = preset.data.image_size
    if data.canvas != size:
        raise PatchbenchError(f"{path}: its patches were made for {data.canvas} px images; data.image_size is {size}")
    ids = s.patches or list(range(len(data.targets)))
    bad = [i for i in ids if i >= len(data.targets)]
    check(not bad, f"imagenet_patch.patches: {bad} out of range; {path} holds {len(data.targets)} patches")
    classes = get_dataset_info(preset.data.dataset).num_classes
    check(all(data.targets[i] < classes for i in ids), f"{path}: a target class is not a {preset.data.dataset} class")
    where = placement(s)
    source = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    out = []
    for i in ids:
        t = data.targets[i]
        out.append(Patch(data.patches[i], torch.ones(1, data.patch_size, data.patch_size), {
            "attack": ATTACK, "target": t, "target_name": data.names.get(t, str(t)), "patch_index": i,
            "size_px": data.patch_size, "area_pct": round(100 * data.patch_size ** 2 / size ** 2, 3),
            "source": f"ImageNet-Patch file sha256 {source}", **where.meta()}))
    return out


def sweep_transfer(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True, *,
                   defenses=None, lambdas=None, patches=None) -> pd.DataFrame:
    """Per model: clean and the published patches × (no defense + each defense × λ)."""
    if patches:
        raise PatchbenchError(f"preset {preset.name} applies the published ImageNet-Patch patches: --patches does not apply")
    conditions = [Condition(None)] + [Condition(p) for p in published_patches(preset)]
    frames = []
    for arch in architectures(preset):
        p = for_arch(preset, arch)
        loaded = ensure_model(p, store, device, progress=progress)
        runs = defense_runs(p, loaded.model, defenses, lambdas)
        rows = evaluate_conditions(p, loaded, conditions, runs, store, device, progress)
        console.print(f"[bold]{preset.name}[/] {arch}: {len(rows)} cells")
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)
