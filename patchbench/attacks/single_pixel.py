"""Foolbox 2's ``SinglePixelAttack`` ("Perturbs just a single pixel and sets it to the min or max"),
the N-pixel attack BMVC 2023 used (Sec. 4, Implementation: "We used FoolBox implementations of
N-pixel attacks"), batched over images in torch.

The algorithm, per image (Foolbox 2.x ``foolbox/attacks/localsearch.py``, ``SinglePixelAttack.__call__``
with its default ``max_pixels=1000``)::

    pixels = permutation(h * w)[:max_pixels]
    for pixel in pixels:                # in the permutation's order
        for value in (min_, max_):      # the bounds: 0 then 1 here
            perturbed = image with every channel of that pixel set to value
            if the model misclassifies perturbed: return it

so an image gets at most ``2 · max_pixels`` tries, each changing exactly one pixel; the first
misclassified try is returned (none: the clean image; an image misclassified to begin with is
returned unchanged). Untargeted, success = argmax f(x') ≠ y (BMVC Eq. 1).

Random draws: one CPU ``torch.Generator`` seeded with ``seed`` at construction; a call on B
images draws ``torch.rand(B, h·w)`` once (the permutation of the region's pixels is its argsort;
see :func:`~patchbench.attacks.pixel_search.random_order`). Successive calls continue the stream.

``region`` (top, left, height, width) confines the pixels to a box (BMVC Sec. 5's quadrants and
centre: :mod:`patchbench.attacks.regions`); pixel index ``i`` is ``(top + i // width, left + i % width)``.
The batched loop and the query count: :mod:`patchbench.attacks.pixel_search`.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from patchbench.attacks.base import Attack, register_attack
from patchbench.attacks.pixel_search import Builder, first_adversarial, random_order, region_of
from patchbench.attacks.regions import Box
from patchbench.errors import check, is_int
from patchbench.util import eval_mode


def check_region(region, who: str):
    """``region`` as a (top, left, height, width) tuple of integers, or None; one-line error otherwise."""
    if region is None:
        return None
    check(isinstance(region, (list, tuple)) and len(region) == 4 and all(is_int(v) for v in region)
          and region[0] >= 0 and region[1] >= 0 and region[2] >= 1 and region[3] >= 1,
          f"{who}: region must be 4 integers (top, left >= 0, height, width >= 1), got {region!r}")
    return tuple(int(v) for v in region)


class PixelAttack(Attack):
    """Base of the Foolbox-style pixel attacks: an L0 attack without ε (a preset's ``eps`` is
    ignored), no ``step_size``; a preset's ``steps`` set the parameter named by ``steps_param``
    (the attack's loop count) where it has one; ``params`` are constructor parameters
    (``region`` fitted to the image size). ``pixels``: at most this many pixels change per image.

    The parameters every one of them takes are checked and kept here: ``region`` (the pixels' box),
    ``seed`` (of the CPU ``torch.Generator`` the attack draws from; successive calls continue its
    stream) and ``eval_batch`` (images per forward pass). After a call, ``last_success`` and
    ``last_queries`` (B,). A subclass checks its own parameters first, then calls this ``__init__``
    (so the first wrong parameter in its signature's order is the one reported)."""

    steps_param: str | None = None

    def __init__(self, model: nn.Module, region: Sequence[int] | None, seed: int, eval_batch: int):
        super().__init__(model)
        check(is_int(seed), f"{self.name}: seed must be an integer, got {seed!r}")
        check(is_int(eval_batch) and eval_batch >= 1, f"{self.name}: eval_batch must be an integer >= 1, got {eval_batch!r}")
        self.region, self.seed, self.eval_batch = check_region(region, self.name), seed, eval_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.last_success = self.last_queries = None

    @classmethod
    def check_config(cls, cfg, image_size: int, where: str = "attack") -> None:
        check(cfg.step_size is None, f"{where}: attack {cfg.name} takes no step_size (set its params instead)")
        check(cfg.steps is None or cls.steps_param is not None, f"{where}: attack {cfg.name} takes no steps")
        check(cfg.steps is None or (is_int(cfg.steps) and cfg.steps >= 1), f"{where}.steps must be an integer >= 1, got {cfg.steps!r}")
        check(isinstance(cfg.params, dict), f"{where}.params must be a mapping")
        accepted = cls.accepted_params() - {"seed"}
        for key in cfg.params:
            check(key in accepted, f"{where}.params: attack {cfg.name} has no parameter {key!r}")
        check(cfg.steps is None or cls.steps_param not in cfg.params, f"{where}: give steps or params.{cls.steps_param}, not both")
        box = cls(nn.Identity(), **cls._kwargs(cfg)).region  # the constructor checks every parameter
        check(box is None or (box[0] + box[2] <= image_size and box[1] + box[3] <= image_size),
              f"{where}.params.region {box} does not fit {image_size}×{image_size} images")

    @classmethod
    def _kwargs(cls, cfg) -> dict:
        return {**cfg.params, **({cls.steps_param: cfg.steps} if cfg.steps is not None else {})}

    @classmethod
    def from_config(cls, model: nn.Module, cfg, image_size: int, progress: bool = False) -> "PixelAttack":
        cls.check_config(cfg, image_size, where=f"attack {cfg.name}")
        return cls(model, **cls._kwargs(cfg), seed=cfg.seed)


class CandidateSearch(PixelAttack):
    """A min/max pixel attack of Foolbox 2 as a fixed sequence of candidate images per image
    (:mod:`patchbench.attacks.pixel_search`): a subclass says what the sequence is
    (:meth:`candidates`); the search returns each image's first misclassified candidate."""

    def candidates(self, images: torch.Tensor, box: Box) -> tuple[int, Builder]:
        """(tries per image, ``build``) for this call: the random draws are made here, before the search."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = images.detach()
        labels = labels.to(x.device)
        n_tries, build = self.candidates(x, region_of(self.region, x, self.name))
        with eval_mode(self.model):
            adv, success, queries = first_adversarial(self.model, x, labels, n_tries, build, self.eval_batch)
        self.last_success, self.last_queries = success.cpu(), queries.cpu()
        return adv


@register_attack
class SinglePixel(CandidateSearch):
    r"""Foolbox 2's SinglePixelAttack (Foolbox: 'Foolbox: A Python toolbox to benchmark the robustness
    of machine learning models' [https://arxiv.org/abs/1707.04131], Rauber, Brendel & Bethge, 2017),
    the N-pixel attack BMVC 2023 ran: one pixel set to the min or the max (module docstring).

    Distance Measure : L0 (one pixel)

    Foolbox 2's SinglePixelAttack, batched (see the module docstring). After a call:
    ``last_success`` (B,) and ``last_queries`` (B,: the clean check plus the tries up to the success).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        max_pixels (int): pixels tried per image, each at 0 then 1. (Default: 1000)
        region, seed, eval_batch: the pixels' box (top, left, height, width), the seed of their order, images per forward pass.

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = SinglePixel(model, max_pixels=1000)
        >>> adv_images = attack(images, labels)
    """

    name = "single_pixel"
    pixels = 1  # one pixel per try; every try starts from the clean image

    def __init__(self, model: nn.Module, max_pixels: int = 1000, region: Sequence[int] | None = None, seed: int = 0,
                 eval_batch: int = 256):
        check(is_int(max_pixels) and max_pixels >= 1, f"{self.name}: max_pixels must be an integer >= 1, got {max_pixels!r}")
        super().__init__(model, region, seed, eval_batch)
        self.max_pixels = max_pixels

    def __repr__(self) -> str:
        return f"SinglePixel(max_pixels={self.max_pixels}, region={self.region}, seed={self.seed})"

    def candidates(self, images: torch.Tensor, box: Box) -> tuple[int, Builder]:
        top, left, h, w = box
        pixels = random_order(len(images), h * w, self.generator)[:, : self.max_pixels].to(images.device)  # B×n
        n = pixels.shape[1]

        def build(imgs: torch.Tensor, rows: torch.Tensor, tries: torch.Tensor) -> torch.Tensor:
            # try t: pixel number t // 2 of the image's order, set to min (t even) or max (t odd)
            pix = pixels[rows][:, tries // 2]  # A×k
            value = (tries % 2).to(imgs.dtype).expand(len(rows), -1)  # 0 = min, 1 = max
            cand = imgs[:, None].repeat(1, len(tries), 1, 1, 1)  # A×k×C×H×W
            a_idx = torch.arange(len(rows), device=imgs.device)[:, None]
            k_idx = torch.arange(len(tries), device=imgs.device)[None, :]
            cand.permute(0, 1, 3, 4, 2)[a_idx, k_idx, top + pix // w, left + pix % w] = value[..., None]
            return cand

        return 2 * n, build
