"""Cutout masks (DeVries & Taylor 2017) as PatchCleanser's authors fine-tune their classifiers with
them (Xiang et al., USENIX Security 2022, Sec. 5.1: "we fine-tune ... on images with two random
masks"; inspire-group/PatchCleanser ``train_model.py`` and ``utils/cutout.py``).

Followed lines of the reference:

* ``train_model.py``: ``--n_holes`` default 2, ``--cutout_size`` 128 at 224 px
  (``example_cmd.sh``: ``--cutout --cutout_size 128 --n_holes 2``); the Cutout transform is
  appended *after* timm's transform, whose last step is ``Normalize`` (``ds_transforms.transforms.
  append(Cutout(n_holes=n_holes, length=cutout_size))``), on every training image;
* ``utils/cutout.py`` ``Cutout.__call__``: per hole ``y = np.random.randint(h)``,
  ``x = np.random.randint(w)`` (a centre anywhere in the image), ``y1 = np.clip(y - self.length //
  2, 0, h)``, ``y2 = np.clip(y + self.length // 2, 0, h)`` (the same for x), ``mask[y1: y2, x1: x2]
  = 0.``, then ``img = img * mask``.

So a hole is ``2 * (length // 2)`` px on a side before clipping at the border, holes may overlap,
and a masked pixel is 0 in the *normalized* tensor, i.e. the normalization mean in pixel space
(patchbench's images are [0, 1] with normalization inside the classifier, so the hole is filled
with the classifier's ``mean``). ``length`` scales with the image: ``round(fraction × side)`` with
``fraction`` = 128/224 by default (37 px at 64 px: a 36 px hole).

Batched in torch, one seeded generator (no numpy global state); with ``share = (rank, K)`` the
holes of the whole global batch are drawn and this rank keeps its rows, as one process would
(:mod:`patchbench.training.distributed`).
"""

from __future__ import annotations

import torch

from patchbench.errors import check, is_int, is_number

PAPER_FRACTION = 128 / 224  # --cutout_size 128 at the authors' 224 px


def hole_length(image_size: int, fraction: float = PAPER_FRACTION) -> int:
    """The reference's ``length`` at ``image_size``: the authors' 128 px at 224 px scaled to the image."""
    check(is_number(fraction) and 0 < fraction <= 1, f"cutout fraction must be in (0, 1], got {fraction!r}")
    return max(1, round(fraction * image_size))


def holes_keep(ys: torch.Tensor, xs: torch.Tensor, h: int, w: int, length: int) -> torch.Tensor:
    """(n, 1, h, w) float keep-mask, 0 inside the holes centred at (``ys``, ``xs``) (n × holes each):
    rows ``clip(y - length // 2, 0, h)`` to ``clip(y + length // 2, 0, h)``, exclusive, columns alike
    (``utils/cutout.py``)."""
    check(is_int(length) and length >= 1, f"cutout length must be an integer >= 1, got {length!r}")
    half = length // 2
    rows, cols = torch.arange(h), torch.arange(w)
    # r is in the hole iff clip(y - half) <= r < clip(y + half): clipping to [0, h] changes nothing for r in [0, h)
    in_rows = (rows >= (ys - half)[..., None]) & (rows < (ys + half)[..., None])  # n × holes × h
    in_cols = (cols >= (xs - half)[..., None]) & (cols < (xs + half)[..., None])  # n × holes × w
    cut = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # n × h × w
    return (~cut).float()[:, None]


def cutout_keep(n: int, h: int, w: int, holes: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """:func:`holes_keep` for ``holes`` random holes per image, each centre uniform over the image
    (``y = np.random.randint(h)``, ``x = np.random.randint(w)``)."""
    check(is_int(holes) and holes >= 0, f"cutout holes must be an integer >= 0, got {holes!r}")
    ys = torch.randint(0, h, (n, holes), generator=generator)
    xs = torch.randint(0, w, (n, holes), generator=generator)
    return holes_keep(ys, xs, h, w, length)


class CutoutMasks:
    """The training images of the ``cutout`` objective: each image with ``holes`` Cutout holes filled
    with the classifier's normalization mean (0 in the normalized tensor, as the reference).

    Called like a training attack, ``masks(x, y) -> x_cut`` (the labels are unused); ``generator``
    and ``share`` as :class:`~patchbench.attacks.pgd.PGD`'s, so the training loop checkpoints and
    shards it the same way."""

    def __init__(self, model, holes: int = 2, fraction: float = PAPER_FRACTION, seed: int = 0):
        self.model = model
        self.holes, self.fraction = holes, fraction
        self.generator = torch.Generator().manual_seed(seed)
        self.share: tuple[int, int] | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        length = hole_length(min(h, w), self.fraction)
        if self.share is None:
            keep = cutout_keep(n, h, w, self.holes, length, self.generator)
        else:  # the global batch's draw (every rank's generator advances alike), this rank's rows
            r, k = self.share
            keep = cutout_keep(n * k, h, w, self.holes, length, self.generator)[r::k]
        keep = keep.to(x.device, x.dtype)
        fill = self.model.mean.to(x.device, x.dtype)
        return x * keep + fill * (1 - keep)
