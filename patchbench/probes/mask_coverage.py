"""Does a masking defense mask the patch? The share of a patch's pixels that a defense's mask
(``maps(x)["mask"]``: DW's inpainted region, SLGS's) marks, and the share of the other pixels.

For the preset's classifier and its patches (each trained and cached as ``reproduce`` would, if
missing), each patch is pasted at each placement of ``placements`` (default: the 4 outer
quadrant corners and the centre, BMVC 2023's protocol; a patch larger than a quadrant: the
centre) on the evaluation images, and for each parameter set of the defense (``--grid
threshold=2,1.5,1 --grid erosions=1,0``: every combination, the preset's own parameters filling
the rest) the probe reports, pooled over patches, placements and images:

* ``patch_covered``: mean over images of |mask ∩ patch| / |patch|;
* ``outside_masked``: mean over images of |mask \\ patch| / |image \\ patch|;
* ``masked``: the share of all pixels masked (the tables' ``masked %``).

No accuracy is read: the probe sets a defense's operating point from what its mask does.
``python -m patchbench.probes.mask_coverage --preset P --results DIR --defense dw --grid threshold=2,1.5,1,0.5``
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import torch

from patchbench.attacks.patch import Patch, Placement
from patchbench.attacks.regions import protocol_regions
from patchbench.cache.models import ensure_model
from patchbench.cache.patches import ensure_patches
from patchbench.config import parse_params
from patchbench.defenses import DEFENSES
from patchbench.defenses.base import MASK
from patchbench.devices import resolve_device
from patchbench.errors import check
from patchbench.evaluation.defense_params import defense_params
from patchbench.presets import load_preset
from patchbench.probes import command
from patchbench.store.results import ResultStore

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")


def patch_region(patch: Patch, images: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Where the patch's mask lies when pasted at ``placement`` (N×1×H×W bool)."""
    ones = Patch(torch.ones_like(patch.pixels[:1]), patch.mask, patch.meta)
    return ones.apply(torch.zeros_like(images[:, :1]), placement) > 0.5


def coverage(mask: torch.Tensor, region: torch.Tensor) -> dict:
    """Per-batch means of the module docstring's three shares (masks N×1×H×W bool)."""
    mask, region = mask.flatten(1), region.flatten(1)
    inside, outside = region.sum(1).clamp(min=1), (~region).sum(1).clamp(min=1)
    return {"patch_covered": float(((mask & region).sum(1) / inside).mean()),
            "outside_masked": float(((mask & ~region).sum(1) / outside).mean()),
            "masked": float(mask.float().mean())}


def placements_for(patch: Patch, image_size: int) -> list[Placement]:
    """The 5 protocol placements (margin 0), or the centre for a patch larger than a quadrant."""
    fits = len(protocol_regions(image_size, patch.size)) == 5
    return [Placement(k, 0) for k in (QUADRANTS if fits else ("center",))]


def mask_coverage(defense_name: str, base: dict, grid: dict[str, list], model, patches: list[Patch],
                  x: torch.Tensor) -> pd.DataFrame:
    """One row per parameter combination of ``grid`` (over ``base``): the shares, pooled (equal
    weight per patch and placement) over ``patches`` at their protocol placements on images ``x``."""
    cls = DEFENSES[defense_name]
    keys = list(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**base, **dict(zip(keys, values))}
        defense = cls.from_params(params, model)
        parts = []
        for patch in patches:
            for where in placements_for(patch, x.shape[-1]):
                xp = patch.apply(x, where)
                mask = defense.maps(xp, model)[MASK]
                check(mask is not None, f"defense {defense_name} has no mask")
                parts.append(coverage(mask.bool(), patch_region(patch, x, where)))
        row = {k: v for k, v in zip(keys, values)}
        row.update({k: 100 * sum(p[k] for p in parts) / len(parts) for k in parts[0]})
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = command.parser("mask_coverage", __doc__)
    ap.add_argument("--defense", default="dw")
    ap.add_argument("--grid", action="append", default=[], help="name=v1,v2,... (every combination is measured)")
    args = ap.parse_args(argv)

    def probe() -> pd.DataFrame:
        p = load_preset(args.preset, args.set)
        check(args.defense in DEFENSES, f"unknown defense {args.defense!r}")
        base, _ = defense_params(p, args.defense)
        grid = {}
        for item in args.grid:
            name, _, values = item.partition("=")
            grid[name] = [parse_params([f"{name}={v}"])[name] for v in values.split(",")]
        device = resolve_device(p.device)
        loaded = ensure_model(p, command.model_store(args.results), device, progress=False)
        patches = ensure_patches(p, loaded, ResultStore(Path(args.results)), device, progress=False)
        source, idx = command.eval_images(p, args.n)
        return mask_coverage(args.defense, base, grid, loaded.model, patches, source.batch(idx, p.data.image_size, device))

    return command.run(probe, digits=2)


if __name__ == "__main__":
    raise SystemExit(main())
