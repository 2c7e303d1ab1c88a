"""Ranking items by a Table 1 metric (BMVC 2023 Sec. 4.3, Eq. 11-13), identical for the patches of
the volumizer and for the syllabus.

:func:`scores` computes m per item; a distance metric measures each item against a reference — a given
tensor, or by default (``"lowest-entropy"``) the item of lowest entropy among the items being
ranked (the set is dim -4 of ``(..., n, C, h, w)``: the patches of one image, or the images
of one batch; ties -> lowest index). :func:`rank` is a stable sort: equal scores keep their
index order. Scores are float64 (float32 on devices without it).
"""

from __future__ import annotations

import torch

from patchbench.errors import PatchbenchError, check
from patchbench.volumization.metrics import check_bins, check_chunk, entropy, get_metric
from patchbench.volumization.split import shape_of

ORDERS = ("ascending", "descending")
REFERENCES = ("lowest-entropy",)


def reference_items(items: torch.Tensor, reference="lowest-entropy", bins: int = 256) -> torch.Tensor:
    """The reference of each ranked set of items (..., n, C, h, w) -> (..., 1, C, h, w):
    ``"lowest-entropy"`` picks the item of least entropy in the set (ties -> lowest index); a
    tensor (C, h, w) is one reference for all sets, (..., C, h, w) one per set."""
    check(items.ndim >= 4, f"ranking a set needs items (..., n, C, h, w), got shape {shape_of(items)}")
    if isinstance(reference, torch.Tensor):
        lead, item = items.shape[:-4], items.shape[-3:]
        check(reference.shape[-3:] == item and reference.ndim in (3, items.ndim - 1),
              f"reference must be one item {tuple(item)} or one per set {tuple(lead) + tuple(item)}, got {tuple(reference.shape)}")
        return reference.to(device=items.device, dtype=items.dtype).unsqueeze(-4)  # broadcasts over the set
    check(reference in REFERENCES, f"reference must be a tensor or one of {', '.join(REFERENCES)}, got {reference!r}")
    h = entropy(items, bins)  # (..., n)
    idx = h.argmin(-1)  # first minimum: ties -> lowest index
    return torch.take_along_dim(items, idx[..., None, None, None, None], dim=-4)


def scores(items: torch.Tensor, metric: str, bins: int = 256, reference="lowest-entropy", eps: float = 1e-10,
           chunk: int | None = None) -> torch.Tensor:
    """The metric m of every item (..., C, h, w) -> (...). A distance metric measures each item
    against its set's reference (:func:`reference_items`; the set is dim -4)."""
    m = get_metric(metric)
    check_bins(bins)
    check_chunk(chunk)
    check(isinstance(items, torch.Tensor) and items.ndim >= 3, f"items must be (..., C, h, w), got shape {shape_of(items)}")
    if m.kind == "standalone":
        return m(items, bins=bins)
    ref = reference_items(items, reference, bins)
    return m(items, ref, bins=bins, eps=eps, chunk=chunk).expand(items.shape[:-3])


def rank(scores: torch.Tensor, order: str = "ascending") -> torch.Tensor:
    """The permutation (long, same shape) that sorts the last dim of ``scores``: ``"ascending"``
    (Eq. 11: x_i before x_j if m(x_i) <= m(x_j)) or ``"descending"``; stable, so equal scores keep
    their index order. NaN sorts as the largest value, +inf like any number."""
    if order not in ORDERS:
        raise PatchbenchError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    return torch.sort(scores, dim=-1, descending=order == "descending", stable=True).indices

