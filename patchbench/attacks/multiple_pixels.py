"""Foolbox 2's ``MultiplePixelsAttack`` ("Perturbs multiple pixels and sets them to the min or max"),
the N > 1 member of the N-pixel family BMVC 2023 ran from Foolbox (Sec. 4; N up to 16 in Fig. 3),
batched over images in torch. ``pixels`` is Foolbox's ``num_pixels`` (N), ``iterations`` its
``iterations``.

The algorithm, per image (Foolbox 2.x ``foolbox/attacks/localsearch.py``,
``MultiplePixelsAttack.__call__``)::

    for _ in range(iterations):
        pixels = permutation(h * w)[:num_pixels]
        perturbed = image.copy()
        for pixel in pixels:
            value = min_ if randint(0, 2) == 1 else max_
            set every channel of that pixel of perturbed to value
            if the model misclassifies perturbed: return it

(a ``pixels`` above the region's pixel count is cut to it, as Foolbox's slice does), so try ``j`` of an iteration carries the first ``j + 1`` pixels of that iteration's order (at most
N pixels change) and the first misclassified try is returned (none: the clean image).

Random draws per call on B images (one CPU ``torch.Generator`` seeded at construction):
``torch.rand(B, iterations, h·w)`` (each iteration's order is the argsort; only its first N
pixels are used, taken as the N smallest keys in order), then
``torch.randint(0, 2, (B, iterations, N))`` (1 = min, 0 = max, Foolbox's coin). Foolbox draws the
coins from numpy's global generator, one per pixel as the loop reaches it; drawing them all first
gives every try the same distribution and makes an image's draws independent of when it stops.
Region and batching: :mod:`patchbench.attacks.single_pixel`, :mod:`patchbench.attacks.pixel_search`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from patchbench.attacks.base import register_attack
from patchbench.attacks.pixel_search import Builder
from patchbench.attacks.regions import Box
from patchbench.attacks.single_pixel import CandidateSearch
from patchbench.errors import check, is_int


@register_attack
class MultiplePixels(CandidateSearch):
    r"""Foolbox 2's MultiplePixelsAttack (Rauber, Brendel & Bethge 2017,
    [https://arxiv.org/abs/1707.04131]): N pixels set to the min or the max, one by one (module docstring).

    Distance Measure : L0 (N pixels)

    Foolbox 2's MultiplePixelsAttack, batched (see the module docstring). After a call:
    ``last_success`` (B,) and ``last_queries`` (B,: the clean check plus the tries up to the success).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        pixels (int): N, the most pixels an iteration changes (one more per try). (Default: 1000)
        iterations (int): tries per image. (Default: 1)
        region, seed, eval_batch: the pixels' box (top, left, height, width), the seed of their order, images per forward pass.

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = MultiplePixels(model, pixels=4, iterations=1)
        >>> adv_images = attack(images, labels)
    """

    name = "multiple_pixels"
    steps_param = "iterations"

    def __init__(self, model: nn.Module, pixels: int = 1000, iterations: int = 1, region: Sequence[int] | None = None,
                 seed: int = 0, eval_batch: int = 256):
        check(is_int(pixels) and pixels >= 1, f"{self.name}: pixels must be an integer >= 1, got {pixels!r}")
        check(is_int(iterations) and iterations >= 1, f"{self.name}: iterations must be an integer >= 1, got {iterations!r}")
        super().__init__(model, region, seed, eval_batch)
        check(self.region is None or pixels <= self.region[2] * self.region[3],
              f"{self.name}: pixels ({pixels}) must not exceed the region's {self.region and self.region[2] * self.region[3]} pixels")
        self.pixels, self.iterations = pixels, iterations

    def __repr__(self) -> str:
        return f"MultiplePixels(pixels={self.pixels}, iterations={self.iterations}, region={self.region}, seed={self.seed})"

    def candidates(self, images: torch.Tensor, box: Box) -> tuple[int, Builder]:
        b, dev = len(images), images.device
        top, left, h, w = box
        n = min(self.pixels, h * w)  # Foolbox: permutation(h * w)[:num_pixels]
        keys = torch.rand(b, self.iterations, h * w, generator=self.generator)
        # the first N pixels of each iteration's order (the argsort of keys): the N smallest keys, in order
        first = keys.topk(n, dim=2, largest=False, sorted=True).indices.to(dev)  # B×it×N
        coin = torch.randint(0, 2, (b, self.iterations, n), generator=self.generator).to(dev)
        colour = (coin == 0).to(images.dtype)  # Foolbox's coin: 1 -> min (0), 0 -> max (1)
        reach = torch.arange(n, device=dev)

        def build(imgs: torch.Tensor, rows: torch.Tensor, tries: torch.Tensor) -> torch.Tensor:
            it, j = tries // n, tries % n
            sel = rows[:, None], it[None, :]  # A×k: only the iterations these tries use
            on = (reach[None, None, :] <= j[None, :, None]).expand(len(rows), -1, -1)  # try j: the first j + 1 pixels
            a_i, k_i, n_i = on.nonzero(as_tuple=True)
            pix = first[sel][a_i, k_i, n_i]  # distinct within a try: no write collides
            cand = imgs[:, None].repeat(1, len(tries), 1, 1, 1)
            cand[a_i, k_i, :, top + pix // w, left + pix % w] = colour[sel][a_i, k_i, n_i][:, None]
            return cand

        return self.iterations * n, build
