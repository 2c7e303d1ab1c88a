"""The undefended model's accuracy drop per N of Foolbox's N-pixel attacks, under the 5-region
protocol (:mod:`patchbench.attacks.regions`): what sets a preset's N so that the attack is strong
enough to show a defense (the presets' operating-point rule: N set so the undefended model loses
at least 30 pp).

For N = 1 the attack is Foolbox's ``single_pixel`` (``max_pixels`` 1000, Foolbox's default), for
N > 1 ``multiple_pixels`` with N pixels (``iterations`` 1, Foolbox's default); each image is
attacked once per protocol box and the accuracy is the mean over the boxes (an N whose footprint
does not fit a quadrant gets the centre box only). The model is the preset's classifier (trained
and cached as ``reproduce`` would, if missing). With ``stop_at`` the sweep ends at the first N
whose drop reaches it.

``python -m patchbench.probes.npixel_drop --preset P --results DIR [--ns 1,2,4,...] [--stop-at 30] [--n 300]``
"""

from __future__ import annotations


import pandas as pd
import torch

from patchbench.attacks import ATTACKS
from patchbench.attacks.regions import attacked_accuracy, npixel_extent, protocol_regions
from patchbench.cache.models import ensure_model
from patchbench.devices import resolve_device
from patchbench.errors import check, is_int
from patchbench.presets import load_preset
from patchbench.probes import command

DEFAULT_NS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def foolbox_attack(model, n: int, box, seed: int = 0, max_pixels: int = 1000):
    """Foolbox 2's attack for N pixels with Foolbox's defaults (``max_pixels`` 1000 for N = 1),
    confined to ``box``."""
    if n == 1:
        return ATTACKS["single_pixel"](model, max_pixels=max_pixels, region=box, seed=seed)
    return ATTACKS["multiple_pixels"](model, pixels=n, iterations=1, region=box, seed=seed)


def npixel_drops(model, x: torch.Tensor, y: torch.Tensor, image_size: int, ns=DEFAULT_NS,
                 stop_at: float | None = None, seed: int = 0) -> pd.DataFrame:
    """Rows N, clean and attacked accuracy (%), drop (pp), the number of protocol boxes."""
    check(all(is_int(n) and n >= 1 for n in ns), f"every N must be an integer >= 1, got {list(ns)!r}")
    with torch.no_grad():
        clean = 100 * float((model(x).argmax(1) == y).float().mean())
    rows = []
    for n in ns:
        boxes = protocol_regions(image_size, npixel_extent(n))
        if n > boxes[0][2] * boxes[0][3]:
            break
        attacked = 100 * attacked_accuracy(model, x, y, lambda box: foolbox_attack(model, n, box, seed), boxes)
        rows.append({"N": n, "clean": clean, "attacked": attacked, "drop_pp": clean - attacked, "boxes": len(boxes)})
        if stop_at is not None and clean - attacked >= stop_at:
            break
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = command.parser("npixel_drop", __doc__)
    ap.add_argument("--ns", default=",".join(map(str, DEFAULT_NS)))
    ap.add_argument("--stop-at", type=float, default=None, help="end at the first N whose drop reaches this many pp")
    args = ap.parse_args(argv)

    def probe() -> pd.DataFrame:
        p = load_preset(args.preset, args.set)
        device = resolve_device(p.device)
        source, idx = command.eval_images(p, args.n)
        model = ensure_model(p, command.model_store(args.results), device, progress=False).model
        return npixel_drops(model, source.batch(idx, p.data.image_size, device), source.labels[idx].to(device),
                            p.data.image_size, [int(v) for v in args.ns.split(",")], args.stop_at)

    return command.run(probe, digits=2, errors=(ValueError,))  # ValueError: --ns not a list of integers


if __name__ == "__main__":
    raise SystemExit(main())
