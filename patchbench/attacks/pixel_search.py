"""The shared loop of the min/max pixel attacks of Foolbox 2 (:mod:`~patchbench.attacks.single_pixel`,
:mod:`~patchbench.attacks.multiple_pixels`): every image has a fixed sequence of candidate images,
fixed by the random draws before the loop starts; the attack returns the *first* candidate of the
sequence that the model misclassifies (Foolbox returns as soon as ``a.predictions`` says
``is_adv``), or the clean image when none does (Foolbox returns no adversarial).

Batched: each round evaluates the next ``k`` candidates of every still-running image in forward
passes of at most ``eval_batch`` images, with ``k = eval_batch // running images`` (at least 1),
so a round is about one full forward batch however many images are left. Candidates past an
image's first success are evaluated and discarded: the output and the query count are those of the
sequential loop (``last_queries`` counts the clean check and the candidates up to and including
the first success, as Foolbox's ``a.predictions`` calls would).

Pixel positions: an index ``i`` of a region (top, left, height, width) is the pixel
``(top + i // width, left + i % width)``. Foolbox 2 computes ``x = pixel % w, y = pixel // w`` and
writes ``image[x, y]`` (rows indexed by ``x``): on square images that is the same uniform draw
over pixels; on non-square ones Foolbox's index leaves the image, ours does not.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from patchbench.attacks.regions import Box
from patchbench.errors import PatchbenchError

# build(images (A×C×H×W), rows (A,) indices into the call's batch, tries (k,)) -> A×k×C×H×W candidates
Builder = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def region_of(region: Box | None, images: torch.Tensor, who: str) -> Box:
    """The region for these images (default: the whole image), checked against their size."""
    _, _, height, width = images.shape
    top, left, h, w = region or (0, 0, height, width)
    if top + h > height or left + w > width:
        raise PatchbenchError(f"{who}: region {(top, left, h, w)} does not fit {height}×{width} images")
    return top, left, h, w


def random_order(b: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of range(n) per image (B×n): the argsort of ``torch.rand(B, n)``
    drawn from ``gen`` (one draw per call, Foolbox's ``nprng.permutation``)."""
    return torch.rand(b, n, generator=gen).argsort(1)


@torch.no_grad()
def first_adversarial(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, n_tries: int, build: Builder,
                      eval_batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(adversarial images, success (B,), queries (B,)): per image the first of its ``n_tries``
    candidates that ``model`` misclassifies (see the module docstring)."""
    x = images.detach()
    dev = x.device
    adv = x.clone()
    wrong0 = model(x).argmax(1) != labels  # already misclassified: adversarial as it is, returned unchanged
    success = wrong0.clone()
    queries = torch.ones(len(x), dtype=torch.long, device=dev)
    active = (~wrong0).nonzero().squeeze(1)
    start = 0
    while len(active) and start < n_tries:
        k = max(1, min(eval_batch // len(active), n_tries - start))
        tries = torch.arange(start, start + k, device=dev)
        cand = build(x[active], active, tries)  # A×k×C×H×W
        flat = cand.reshape(-1, *x.shape[1:])
        owner = labels[active].repeat_interleave(k)
        wrong = torch.cat([model(flat[s:s + eval_batch]).argmax(1) != owner[s:s + eval_batch]
                           for s in range(0, len(flat), eval_batch)]).view(len(active), k)
        hit = wrong.any(1)
        first = wrong.int().argmax(1)  # the first True of each row (argmax returns the first maximum)
        queries[active] += torch.where(hit, first + 1, torch.full_like(first, k))
        won = hit.nonzero().squeeze(1)
        adv[active[won]] = cand[won, first[won]]
        success[active[won]] = True
        active = active[~hit]
        start += k
    return adv, success, queries
