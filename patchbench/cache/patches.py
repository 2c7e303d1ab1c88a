"""Patches of the preset's attacks: trained on training images (never evaluation images) or
loaded from the patch cache (:mod:`patchbench.cache.patch_cache`); patch files given by a user,
checked against the preset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch

from patchbench.attacks import attack_class
from patchbench.attacks.patch import Patch
from patchbench.attacks.patch_files import load_patch_file
from patchbench.attacks.affine_placement import AffinePlacement
from patchbench.attacks.placement import PLACEMENTS, Placement, region_id
from patchbench.cache.models import LoadedModel
from patchbench.cache.patch_cache import PatchCache, PatchKey
from patchbench.config import AttackConfig, PatchFile, Preset, cache_hash, key_fields
from patchbench.data import ImageSource, get_dataset_info, iterate, load_split
from patchbench.errors import PatchbenchError, check, is_int
from patchbench.store.results import ResultStore, now_utc
from patchbench.util import console


def patch_key(attack: AttackConfig, size: int) -> dict:
    """What names a patch besides the model it attacks: the attack config's identity at one size (a
    placement mask file by its content, :func:`~patchbench.attacks.placement.region_id`)."""
    key = {"attack": key_fields(attack), "size": size}
    return key if attack.region is None else {**key, "region_id": region_id(attack.region)}


def cache_key(attack: AttackConfig, size: int, preset: Preset, model_id: str) -> PatchKey:
    """The patch cache's key of ``attack``'s patch at ``size`` against model ``model_id``."""
    cfg = {**patch_key(attack, size), "model_id": model_id, "image_size": preset.data.image_size}
    aim = "untargeted" if attack.target is None else f"t{attack.target}"
    return PatchKey.of(f"{attack.name}-{size}px-{aim}-{attack.placement}", cfg)


def patch_stem(attack: AttackConfig, size: int, preset: Preset, model_id: str, store: ResultStore) -> Path:
    """Where that patch is cached, without the suffix."""
    return PatchCache(store.root).path(cache_key(attack, size, preset, model_id)).with_suffix("")


def patch_batches(source: ImageSource, pool: torch.Tensor, image_size: int, batch_size: int,
                  device: torch.device, seed: int, num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless epochs over ``pool``, reshuffled each epoch with a seeded generator."""
    gen = torch.Generator().manual_seed(seed + 1)
    while True:
        order = pool[torch.randperm(len(pool), generator=gen)]
        usable = (len(order) // batch_size) * batch_size or len(order)
        for _, x, y in iterate(source, order[:usable], image_size, batch_size, device, num_workers):
            yield x, y


def patch_candidates(source: ImageSource, attack: AttackConfig) -> torch.Tensor:
    """Training images whose label is not the target (untargeted: all), in the attack seed's random order."""
    gen = torch.Generator().manual_seed(attack.seed)
    if attack.target is None:
        candidates = torch.arange(len(source.labels))
    else:
        candidates = torch.nonzero(source.labels != attack.target).squeeze(1)
    return candidates[torch.randperm(len(candidates), generator=gen)]


def selection_indices(candidates: torch.Tensor, train_pool: int, n: int) -> torch.Tensor:
    """``n`` non-target training images outside the first ``train_pool`` candidates (the last
    ``n`` candidates, which may overlap the pool, when the split has too few)."""
    rest = candidates[train_pool:]
    return (rest if len(rest) >= n else candidates.flip(0))[:n]


def check_target(preset: Preset, target: int | None) -> None:
    info = get_dataset_info(preset.data.dataset)
    if target is not None and target >= info.num_classes:
        raise PatchbenchError(f"target class {target} out of range for {preset.data.dataset} ({info.num_classes} classes)")


def attack_entry(preset: Preset, name: str, **overrides) -> AttackConfig:
    """The preset's entry for patch attack ``name`` (defaults if it has none) with ``overrides``."""
    base = next((a for a in preset.attacks if a.name == name), AttackConfig(name=name))
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    attack_class(name, patch=True).check_config(cfg, preset.data.image_size, where=f"attack {name}")
    check_target(preset, cfg.target)
    return cfg


def train_patch(preset: Preset, attack: AttackConfig, size: int, loaded: LoadedModel, store: ResultStore,
                device: torch.device, out: Path | None = None, force: bool = False, progress: bool = True) -> Patch:
    """Train (or load the cached) patch of ``attack`` at ``size`` px against the preset's model."""
    cls = attack_class(attack.name, patch=True)
    one_size = replace(attack, sizes=[size])
    cls.check_config(one_size, preset.data.image_size)
    cache, key = PatchCache(store.root), cache_key(attack, size, preset, loaded.model_id)
    cached = cache.load(key) if out is None and not force else None
    if cached is not None:
        return cached
    store.require_cached(f"patch {attack.name} {size}px seed {attack.seed}",
                         Path(out).with_suffix(".pt") if out else cache.path(key))
    d = preset.data
    info = get_dataset_info(d.dataset)
    check_target(preset, attack.target)
    source = load_split(d.dataset, d.root, "train", d.image_size, verify=d.verify)
    candidates = patch_candidates(source, attack)
    pool = candidates[: attack.train_pool]
    success_idx = candidates[: min(attack.success_n, len(candidates))]
    atk = cls.from_config(loaded.model, one_size, d.image_size, progress=progress)
    batches = patch_batches(source, pool, d.image_size, attack.batch_size, device, attack.seed, d.num_workers)
    holdout = None
    if attack.restarts > 1:  # restarts are chosen on training images outside the pool, never on evaluation images
        hold_idx = selection_indices(candidates, attack.train_pool, attack.select_n)
        holdout = next(iter((x, y) for _, x, y in iterate(source, hold_idx, d.image_size, len(hold_idx), device)))
    patch = atk.fit(batches, channels=info.channels, holdout=holdout)
    rate = atk.success_rate((x, y) for _, x, y in iterate(source, success_idx, d.image_size, d.batch_size, device))
    names = loaded.model.class_names
    target_name = (None if attack.target is None else names[attack.target] if attack.target < len(names)
                   else str(attack.target))
    patch.meta.update({
        "model": preset.model.arch, "model_id": loaded.model_id, "dataset": d.dataset,
        "target_name": target_name, "train_success_rate": rate, "success_n": len(success_idx),
        "batch_size": attack.batch_size, "train_pool": len(pool), "preset": preset.name,
        "config_hash": cache_hash(patch_key(attack, size)), "created": now_utc(),
    })
    pt = patch.save(Path(out).with_suffix("")) if out else cache.save(key, patch)
    aim = "untargeted" if target_name is None else f"target {target_name!r}"
    console.print(f"  {attack.name} {size}px ({patch.meta['area_pct']}% of the image) -> {aim}: "
                  f"success {rate:.1%} on {len(success_idx)} training images -> {pt}")
    return patch


def attack_seeds(attack: AttackConfig) -> list[AttackConfig]:
    """One config per seed of ``attack.seeds`` (just the entry itself when it lists none)."""
    return [replace(attack, seed=s, seeds=[]) for s in attack.seeds] if attack.seeds else [attack]


def with_seeds(preset: Preset, seeds: str | None) -> Preset:
    """``--seeds 0,1,2``: every attack of the preset trained once per seed."""
    if seeds is None:
        return preset
    try:
        values = [int(v) for v in seeds.split(",") if v.strip()]
    except ValueError:
        raise PatchbenchError(f"--seeds expects a comma list of integers, got {seeds!r}") from None
    if not values or len(set(values)) != len(values):
        raise PatchbenchError(f"--seeds expects distinct integers, got {seeds!r}")
    return replace(preset, attacks=[replace(a, seeds=values) for a in preset.attacks])


def ensure_patches(preset: Preset, loaded: LoadedModel, store: ResultStore, device: torch.device,
                   progress: bool = True) -> list[Patch]:
    """Every patch of the preset: each attack × size × seed, trained or loaded from the cache."""
    return [train_patch(preset, seeded, size, loaded, store, device, progress=progress)
            for attack in preset.attacks for size in attack.sizes for seeded in attack_seeds(attack)]


def placed(patch: Patch, entry: PatchFile) -> Patch:
    """``patch`` at the placement ``entry`` asks for; fields it leaves unset keep the patch's own."""
    if entry.placement is None and entry.margin is None and entry.region is None and entry.seed is None:
        return patch
    own = patch.placement
    kind = entry.placement or own.kind
    seed = entry.seed if entry.seed is not None else getattr(own, "seed", 0)
    if kind == "affine":
        where = AffinePlacement(seed=seed) if own.kind != "affine" else replace(own, seed=seed)
    else:
        check(kind in PLACEMENTS, f"patch {entry.file}: placement must be one of {', '.join((*PLACEMENTS, 'affine'))}, "
                                  f"got {kind!r}")
        margin = entry.margin if entry.margin is not None else getattr(own, "margin", 0)
        check(is_int(margin) and margin >= 0, f"patch {entry.file}: margin must be an integer >= 0, got {margin!r}")
        where = Placement(kind, margin, entry.region if entry.region is not None else getattr(own, "region", None), seed)
    meta = {k: v for k, v in patch.meta.items() if k not in ("region", "placement_seed", "affine")}
    return Patch(patch.pixels, patch.mask, {**meta, **where.meta()})


def load_patches(files: list[str | PatchFile], preset: Preset) -> list[Patch]:
    """Patch files (PNG or tensor files, :mod:`patchbench.attacks.patch_files`), each at its entry's
    placement (a bare path: the file's own), checked against the preset's images before any work."""
    patches = []
    for f in files:
        entry = f if isinstance(f, PatchFile) else PatchFile(file=str(f))
        patch = placed(load_patch_file(entry.file), entry)
        check_patch_fits(patch, preset, entry.file)
        patches.append(patch)
    return patches


def preset_patches(preset: Preset) -> list[Patch]:
    """The preset's ``patches:`` list; a relative path is read from the preset file's folder when the
    file is there, else from the working directory."""
    here = Path(preset.source).parent if preset.source.endswith((".yaml", ".yml")) else None
    entries = [replace(e, file=str(here / e.file)) if here and not Path(e.file).is_absolute() and (here / e.file).exists()
               else e for e in preset.patches]
    return load_patches(entries, preset)


def check_patch_fits(patch: Patch, preset: Preset, where: str) -> None:
    info = get_dataset_info(preset.data.dataset)
    if patch.pixels.shape[0] != info.channels:
        raise PatchbenchError(f"{where}: patch has {patch.pixels.shape[0]} channel(s), {preset.data.dataset} has {info.channels}")
    if patch.size >= preset.data.image_size:
        raise PatchbenchError(f"{where}: a {patch.size} px patch does not fit {preset.data.image_size} px images")
    patch.placement.check(preset.data.image_size, patch.size, where)

