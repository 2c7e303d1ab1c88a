"""The curriculum syllabus (BMVC 2023 Sec. 4.3, Eq. 11-13) as an ordering of the epoch.

The paper orders the samples of a batch B from simple to complex, S: B -> B' with x'_i before
x'_j when m(x'_i) <= m(x'_j) (Eq. 11-13), m a metric of Table 1 — the same metrics and ranking
as the volumizer (:mod:`patchbench.volumization`). Inside one mini-batch the order cannot
change the mean gradient, so the syllabus is implemented one level up, as an ordering of the
epoch:

1. the epoch's random permutation is cut into consecutive windows of ``window`` samples (a
   parameter; e.g. several batches, window = window_batches × batch_size; the last window may
   be shorter);
2. inside each window the samples are sorted by the metric, ``"ascending"`` (simple first,
   Eq. 11) or ``"descending"``; the sort is stable, ties keep their random order;
3. batches are then cut consecutively, so within a window the simpler samples are seen in
   earlier batches. Windows keep their membership: which samples share a window stays random.

``window`` = 1 leaves the random order as it is; ``window`` >= the epoch sorts the whole epoch.

Scores: a tensor indexed by dataset index (precomputed, e.g. the entropy of every training
image), or a callable ``scores(idx) -> (len(idx),)`` called once per window with that window's
dataset indices in epoch order. Distance metrics need the callable: by default their reference
is the window's lowest-entropy sample (:func:`image_scores` on the window's images; a given
reference image is the other choice). :func:`image_scores` applies the volumizer's metrics to
whole images, all channels pooled.
"""

from __future__ import annotations

from typing import Callable

import torch

from patchbench.data import iterate
from patchbench.errors import check, is_int
from patchbench.volumization import ORDERS, rank, scores

ScoreSource = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def image_scores(images: torch.Tensor, metric: str, bins: int = 256, reference="lowest-entropy", eps: float = 1e-10,
                 chunk: int | None = None) -> torch.Tensor:
    """The metric (Table 1) of each image (B, C, H, W) -> (B,) — a distance metric against
    ``reference``: the batch's lowest-entropy image (ties -> lowest index) or a given (C, H, W)."""
    check(isinstance(images, torch.Tensor) and images.ndim == 4, f"image_scores expects images (B, C, H, W), got "
          f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    return scores(images, metric, bins=bins, reference=reference, eps=eps, chunk=chunk)


def syllabus_permutation(epoch_perm: torch.Tensor, sample_scores: ScoreSource, window: int,
                         order: str = "ascending") -> torch.Tensor:
    """``epoch_perm`` (1-D long, dataset indices in random order) rearranged so that each window
    of ``window`` consecutive samples is sorted by score (stable; see the module docstring).
    ``sample_scores``: a tensor indexed by dataset index, or ``callable(idx) -> scores`` called
    per window. Returns a permutation of ``epoch_perm`` on its device."""
    check(isinstance(epoch_perm, torch.Tensor) and epoch_perm.ndim == 1 and not epoch_perm.is_floating_point(),
          "epoch_perm must be a 1-D integer tensor of dataset indices")
    check(is_int(window) and window >= 1, f"window must be an integer >= 1 (samples), got {window!r}")
    check(order in ORDERS, f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    n = epoch_perm.numel()
    if callable(sample_scores):
        parts = []
        for idx in epoch_perm.split(window):
            s = torch.as_tensor(sample_scores(idx)).reshape(-1)
            check(s.numel() == idx.numel(), f"the score callable returned {s.numel()} scores for a window of {idx.numel()}")
            parts.append(s.to(epoch_perm.device))
        s = torch.cat(parts) if parts else torch.zeros(0, device=epoch_perm.device)
    else:
        check(isinstance(sample_scores, torch.Tensor) and sample_scores.ndim == 1,
              "sample_scores must be a 1-D tensor indexed by dataset index, or a callable(idx) -> scores")
        check(n == 0 or (int(epoch_perm.min()) >= 0 and int(epoch_perm.max()) < sample_scores.numel()),
              f"epoch_perm indexes beyond the {sample_scores.numel()} sample scores")
        s = sample_scores.to(epoch_perm.device)[epoch_perm]
    by_score = rank(s, order)  # stable: ties keep their epoch position
    window_of = torch.arange(n, device=epoch_perm.device) // window
    by_window = torch.sort(window_of[by_score], stable=True).indices  # regroup windows, keeping the score order inside
    return epoch_perm[by_score[by_window]]


def epoch_syllabus(order: torch.Tensor, source, image_size: int, cfg, device) -> torch.Tensor:
    """The training loop's hook: ``order`` (an epoch's dataset indices) rearranged with the
    metric ``cfg.syllabus``, windows of ``cfg.syllabus_window`` batches of ``cfg.batch_size``,
    ``cfg.syllabus_order`` and ``cfg.syllabus_bins``; each window's images are loaded at
    ``image_size`` on ``device`` and scored by :func:`image_scores` (distance metrics against the
    window's lowest-entropy image)."""

    def window_scores(idx: torch.Tensor) -> torch.Tensor:
        _, images, _ = next(iterate(source, idx, image_size, idx.numel(), device))
        return image_scores(images, cfg.syllabus, bins=cfg.syllabus_bins).cpu()

    return syllabus_permutation(order, window_scores, cfg.syllabus_window * cfg.batch_size, cfg.syllabus_order)
