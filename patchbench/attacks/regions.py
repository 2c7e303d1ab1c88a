"""The attack-region protocol of BMVC 2023 Sec. 5 ("Attack Strategy"), for the N-pixel attack
(:mod:`patchbench.attacks.npixel`) and patch attacks alike.

BMVC 2023 Sec. 5: "the attack is constrained to 4 regions. If the attacked
region size spans multiple quadrants, the attack is placed at the center of the image. The average
of the five attacked classifications results is then considered the final classification". We
read "five" as the 4 quadrants plus a centre box the size of a quadrant: each image is attacked
5 times, once confined to each box, and the accuracy under attack is the mean of the 5
accuracies (:func:`protocol_regions`, :func:`attacked_accuracy`). An attack whose footprint
does not fit in a quadrant gets only the centre box of its own size. An N-pixel attack's
footprint is the smallest square holding N pixels (:func:`npixel_extent`). The paper's range
N ∈ [1, 2·p_w·p_h] (p the volumizer's patch) is a preset-level rule; here only 1 ≤ N ≤ the
region's pixel count is checked.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn

from patchbench.attacks.base import Attack
from patchbench.errors import check, is_int
from patchbench.util import eval_mode

Box = tuple[int, int, int, int]  # (top, left, height, width)


def npixel_extent(pixels: int) -> int:
    """Side of the smallest square holding ``pixels`` pixels: an N-pixel attack's footprint."""
    check(is_int(pixels) and pixels >= 1, f"pixels must be an integer >= 1, got {pixels!r}")
    return math.isqrt(pixels - 1) + 1


def protocol_regions(image_size: int | Sequence[int], extent: int | Sequence[int]) -> list[Box]:
    """The boxes an attack is confined to (BMVC 2023 Sec. 5, "Attack Strategy").

    ``image_size``: H (square) or (H, W); ``extent``: the attack's footprint, a side or (h, w)
    (a patch's size; :func:`npixel_extent` for N pixels). If it fits in a quadrant (h ≤ ⌊H/2⌋,
    w ≤ ⌊W/2⌋): the 4 quadrants (top-left, top-right, bottom-left, bottom-right; the lower and
    right ones take the extra row/column of an odd size) and the centre box of quadrant size,
    "five attacked classifications". Otherwise it "spans multiple quadrants" and is "placed at
    the center": one box of its own size, centred. Boxes are (top, left, height, width).
    """
    hh, ww = (image_size, image_size) if is_int(image_size) else tuple(image_size)
    eh, ew = (extent, extent) if is_int(extent) else tuple(extent)
    check(all(is_int(v) and v >= 1 for v in (hh, ww, eh, ew)), f"image size and extent must be positive integers, got {image_size!r}, {extent!r}")
    check(eh <= hh and ew <= ww, f"an extent of {eh}×{ew} does not fit {hh}×{ww} images")
    qh, qw = hh // 2, ww // 2
    if 1 <= eh <= qh and 1 <= ew <= qw:
        return [(0, 0, qh, qw), (0, qw, qh, ww - qw), (qh, 0, hh - qh, qw), (qh, qw, hh - qh, ww - qw),
                ((hh - qh) // 2, (ww - qw) // 2, qh, qw)]
    return [((hh - eh) // 2, (ww - ew) // 2, eh, ew)]


@torch.no_grad()
def attacked_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      attack_factory: Callable[[Box], Attack], regions: Sequence[Box]) -> float:
    """Accuracy under attack, averaged over ``regions`` (BMVC 2023 Sec. 5): each image is attacked
    once per box by ``attack_factory(box)`` and the mean of the per-box accuracies is returned."""
    check(len(regions) >= 1, "attacked_accuracy needs at least one region")
    accs = []
    with eval_mode(model):
        for box in regions:
            adv = attack_factory(tuple(box))(images, labels)
            accs.append((model(adv).argmax(1) == labels.to(adv.device)).float().mean().item())
    return sum(accs) / len(accs)
