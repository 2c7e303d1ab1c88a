"""Does an N-pixel change reorder a volumetric model's ranked volume, and is that why it fails?

A volumetric model g (:class:`patchbench.models.wrapper.VolumetricClassifier`) ranks an image's
patches by a metric of their pixels (BMVC 2023 Eq. 3, 11-13) before its 3-D network sees them, so
changing one pixel can move a patch to another depth of the volume: a change the network never
saw in training. Per volumetric model of the preset (each syllabus; trained and cached as
``reproduce`` would, if missing), on the evaluation images, for Foolbox's N-pixel attack (with
Foolbox's defaults, :func:`patchbench.probes.npixel_drop.foolbox_attack`) under the 5-region
protocol, pooled over the boxes:

* ``random_reorder``: the share of random N-pixel changes (random pixels of the box set to 0 or 1,
  one draw per image and box) that change the order — how sensitive the ranking is by itself;
* ``attacked``: g's accuracy under the attack (%), as the tables count it;
* ``adv_reordered``: of the images the attack fooled, the share whose order differs from the
  clean image's;
* ``frozen``: g's accuracy on the same adversarial images with the clean image's order kept (the
  ranking made blind to the attack); ``frozen − attacked`` is what the reordering costs.

``python -m patchbench.probes.volume_order --preset P --results DIR [--pixels 1] [--n 300]``
"""

from __future__ import annotations


import pandas as pd
import torch

from patchbench.attacks.regions import npixel_extent, protocol_regions
from patchbench.cache.models import ensure_model
from patchbench.devices import resolve_device
from patchbench.errors import check
from patchbench.models.volumetric import aggregate
from patchbench.presets import load_preset
from patchbench.probes import command
from patchbench.probes.npixel_drop import foolbox_attack
from patchbench.volumization.split import split_patches


def logits_in_order(g, x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """g's logits for images ``x`` with their patches stacked in ``order`` (B, N) instead of the
    volumizer's own ranking of ``x`` (the same as ``g(x)`` when ``order`` is that ranking)."""
    vol = g.volumizer
    patches, _ = split_patches(x, vol.patch, vol.pad)
    ranked = torch.take_along_dim(patches, order[:, :, None, None, None], dim=1).transpose(1, 2)
    return aggregate(g.net((ranked - g.mean.unsqueeze(2)) / g.std.unsqueeze(2)), g.aggregation)


def random_pixels(x: torch.Tensor, n: int, box, generator: torch.Generator) -> torch.Tensor:
    """``x`` with ``n`` random pixels of ``box`` (top, left, h, w) per image set to 0 or 1 (all channels)."""
    top, left, h, w = box
    b = len(x)
    pick = torch.rand(b, h * w, generator=generator).argsort(1)[:, :n]
    value = torch.randint(0, 2, (b, n), generator=generator).to(x.dtype)
    out = x.clone()
    rows, cols = top + pick // w, left + pick % w
    out.permute(0, 2, 3, 1)[torch.arange(b)[:, None], rows.to(x.device), cols.to(x.device)] = value[..., None].to(x.device)
    return out


@torch.no_grad()
def order_probe(g, x: torch.Tensor, y: torch.Tensor, image_size: int, pixels: int = 1, seed: int = 0,
                max_pixels: int = 1000) -> dict:
    """The shares of the module docstring for model ``g`` on images ``x`` (percent)."""
    check(hasattr(g, "volumizer"), "the volume-order probe needs a volumetric model (one with a volumizer)")
    gen = torch.Generator().manual_seed(seed)
    order = g.volumizer.order_of(x)
    random_re, fooled, reordered, correct, frozen, total = 0, 0, 0, 0, 0, 0
    for box in protocol_regions(image_size, npixel_extent(pixels)):
        xr = random_pixels(x, pixels, box, gen)
        random_re += int((g.volumizer.order_of(xr) != order).any(1).sum())
        adv = foolbox_attack(g, pixels, box, seed, max_pixels)(x, y)
        pred = g(adv).argmax(1)
        adv_order = g.volumizer.order_of(adv)
        hit = (pred != y) & (g(x).argmax(1) == y)
        fooled += int(hit.sum())
        reordered += int((hit & (adv_order != order).any(1)).sum())
        correct += int((pred == y).sum())
        frozen += int((logits_in_order(g, adv, order).argmax(1) == y).sum())
        total += len(x)
    return {"random_reorder": 100 * random_re / total, "attacked": 100 * correct / total,
            "adv_reordered": 100 * reordered / max(fooled, 1), "fooled": fooled, "frozen": 100 * frozen / total}


def volumetric_presets(preset) -> list[tuple[str, object]]:
    """(label, preset) of each volumetric model a preset's sections train (a section names them
    with ``model_presets(preset)``), or the preset itself when its model is volumetric."""
    found = [m for sec in preset.extra.values() if hasattr(sec, "model_presets") for m in sec.model_presets(preset)]
    found = [(label, p) for label, p in found if p.model.volumize is not None]
    if not found and preset.model.volumize is not None:
        found = [(preset.name, preset)]
    check(bool(found), f"preset {preset.name} has no volumetric model")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = command.parser("volume_order", __doc__)
    ap.add_argument("--pixels", type=int, default=1)
    args = ap.parse_args(argv)

    def probe() -> pd.DataFrame:
        p = load_preset(args.preset, args.set)
        device = resolve_device(p.device)
        source, idx = command.eval_images(p, args.n)
        x, y = source.batch(idx, p.data.image_size, device), source.labels[idx].to(device)
        store = command.model_store(args.results)
        return pd.DataFrame([{"model": label, **order_probe(ensure_model(gp, store, device, progress=False).model, x, y,
                                                              p.data.image_size, args.pixels)}
                             for label, gp in volumetric_presets(p)])

    return command.run(probe, digits=2)


if __name__ == "__main__":
    raise SystemExit(main())
