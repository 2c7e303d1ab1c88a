"""``patchbench export-patch``: a cached patch as files to share — ``OUT.png`` (the patch at its size,
carrying the exact float32 tensors, :mod:`patchbench.attacks.patch_png`) and ``OUT.json`` (a sidecar:
attack, target, size, placement, model and preset hashes, seed, training success, content id, git SHA).

``patchbench evaluate --patch OUT.png`` (or a preset's ``patches:``) re-applies the exact patch, so
on the same model, images, defense and λ it computes the cell the patch's own sweep stored: the same
run id and the same predictions. Nothing is trained here: a patch or model that is not cached is a
one-line error naming the command that makes it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from patchbench import __version__
from patchbench.attacks.patch import Patch
from patchbench.attacks.patch_png import lean_meta
from patchbench.cache.models import ensure_model, model_config_hash
from patchbench.cache.patch_cache import PatchCache
from patchbench.cache.patches import attack_entry, train_patch
from patchbench.config import Preset
from patchbench.errors import PatchbenchError, check_writable_dir
from patchbench.config.keys import config_hash
from patchbench.store.results import NotCached, ResultStore, git_sha, now_utc
from patchbench.util import atomic_write


def out_paths(out: Path, stem: str) -> tuple[Path, Path]:
    """(PNG, sidecar JSON) for ``--out``: ``NAME.png`` and ``NAME.json``, or for anything else (a folder,
    made if need be) ``<stem>.png`` and ``<stem>.json`` in it."""
    out = Path(out)
    if out.suffix.lower() != ".png" and out.exists() and not out.is_dir():
        raise PatchbenchError(f"--out {out}: give a .png file name or a folder")
    png = out if out.suffix.lower() == ".png" else out / f"{stem}.png"
    check_writable_dir(png.parent, "--out")
    return png, png.with_suffix(".json")


def cached_patch(preset: Preset, results: Path, attack: str, size: int, seed: int | None, target: int | None,
                 device: torch.device) -> Patch:
    """The cached patch of ``attack`` at ``size`` px (seed, target) against the preset's cached model."""
    store = ResultStore(results, plan_only=True)  # nothing is trained: a missing model or patch is NotCached
    entries = [a for a in preset.attacks if a.name == attack and (target is None or a.target == target)]
    if not entries:
        raise PatchbenchError(f"preset {preset.name} has no {attack} attack" + ("" if target is None else f" with target {target}")
                              + f"; its attacks: {', '.join(sorted({a.name for a in preset.attacks})) or 'none'}")
    base = entries[0]
    seeds = base.seeds or [base.seed]
    chosen = seeds[0] if seed is None else seed
    if chosen not in seeds or size not in base.sizes:
        raise PatchbenchError(f"preset {preset.name}: {attack} is trained at sizes {base.sizes} and seeds {seeds}, "
                              f"not size {size} seed {chosen}")
    try:
        loaded = ensure_model(preset, store, device, progress=False)
        cfg = replace(attack_entry(preset, attack, sizes=[size], target=base.target), seed=chosen, seeds=[])
        return train_patch(preset, cfg, size, loaded, store, device, progress=False)
    except NotCached as exc:
        raise PatchbenchError(f"{exc}; run `patchbench sweep --preset {preset.name} --results {results}` first") from None


def sidecar(patch: Patch, preset: Preset | None, png: Path) -> dict:
    """What the JSON beside the PNG says of the patch: what it is, where it came from, how to re-apply it."""
    m = patch.meta
    return {
        "png": png.name, "content_id": patch.content_id(), "attack": m.get("attack"), "target": m.get("target"),
        "target_name": m.get("target_name"), "size_px": patch.size, "area_pct": m.get("area_pct"),
        "placement": patch.placement.label(), "seed": m.get("seed"), "train_success_rate": m.get("train_success_rate"),
        "success_n": m.get("success_n"), "model": m.get("model"), "model_id": m.get("model_id"), "dataset": m.get("dataset"),
        "image_size": m.get("image_size"), "model_config_hash": model_config_hash(preset) if preset else None,
        "preset": preset.name if preset else m.get("preset"), "preset_hash": config_hash(preset) if preset else None,
        "patch_config_hash": m.get("config_hash"), "patch_created": m.get("created"), "git_sha": git_sha(),
        "patchbench": __version__, "exported": now_utc(),
        "exact": "the PNG's patchbench:patch chunk holds the float32 patch: `patchbench evaluate --patch` re-applies it exactly",
        "meta": lean_meta(m),
    }


def export(patch: Patch, out: Path, preset: Preset | None = None) -> tuple[Path, Path]:
    """Write the PNG (exact) and its sidecar JSON; returns their paths."""
    stem = f"{patch.meta.get('attack', 'patch')}-{patch.size}px-{patch.content_id()[:8]}"
    png, js = out_paths(out, stem)
    atomic_write(png, patch.png())
    atomic_write(js, (json.dumps(sidecar(patch, preset, png), indent=2, sort_keys=True) + "\n").encode())
    return png, js


def artifact(given: str | Path, results: Path) -> Path:
    """``--from``: a cached artifact's ``.pt``, or its name or cache key (``lavan-8px-t0-top-right-27cabbc09547``,
    ``27cabbc09547``) looked up in the patch cache of ``results`` (one match)."""
    if Path(given).is_file():
        return Path(given)
    return PatchCache(results).find(str(given))


def export_cached_file(given: str | Path, out: Path, results: Path) -> tuple[Path, Path]:
    """``--from``: a cached artifact (its JSON metadata beside it) exported as it is."""
    return export(Patch.load(artifact(given, results)), out)
