"""``patchbench defend``: a defense applied to image files."""

from __future__ import annotations

from pathlib import Path

import torch

from patchbench.imagefiles import imageio
from patchbench.config import Preset
from patchbench.evaluation.defense_params import resolve_defense
from patchbench.errors import check_writable_dir
from patchbench.models.wrapper import Normalizer


def defend_files(files: list[Path], out_dir: Path, name: str, lam: float, overrides: dict,
                 preset: Preset | None, save_maps: bool, device: torch.device) -> int:
    """Defend image files: T(x) for each as PNG with the same stem in ``out_dir``; returns the count.

    Every file is read (and so validated) before anything is written. With a preset, its
    defense entry and its dataset's normalization are used (no weights are needed; defenses
    that need the classifier itself, such as SLGS, ask for it).
    """
    check_writable_dir(out_dir, "--out")  # an existing file there, or no permission: before reading anything
    images = [imageio.read_image(f) for f in files]
    model = Normalizer.for_dataset(preset.data.dataset) if preset is not None else None
    defense, _ = resolve_defense(preset, name, model, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    for group in imageio.group_by_shape(images):
        x = torch.stack([images[i] for i in group]).to(device)
        maps = defense.maps(x, model)
        with torch.no_grad():
            y = defense.apply(x, maps, lam)
        for j, i in enumerate(group):
            imageio.write_png(y[j], out_dir / f"{files[i].stem}.png")
            for key in defense.saved_maps if save_maps else ():
                imageio.write_png(maps[key][j].clamp(0, 1), out_dir / "maps" / f"{files[i].stem}.png")
    return len(files)

