"""The ranking metrics of BMVC 2023 Table 1, batched over items, and their registry.

:data:`METRICS`: the measures of Table 1, batched over items ``(..., C, h, w)``. The
histogram ``b_x`` (Table 1: "normalized histogram of pixel intensities") pools all channels
of an item; a value x in [0, 1] goes to bin ``clamp(floor(x·bins), 0, bins-1)`` (x = 1 lands
in the top bin; values outside [0, 1] are clamped into the edge bins). Choices where Table 1
is loose (all information measures are in bits, log base 2):

- ``entropy`` (standalone): Shannon entropy H = -Σ p(i) log2 p(i) of the normalized
  histogram. Table 1 writes Σ b(i) log(N/b(i)) with counts b, which is N·H: the same ranking
  within items of equal size; we use the per-pixel H so items of different sizes compare.
- ``joint_entropy`` (distance): JE(x1, x2) = -Σ p(i, j) log2 p(i, j) over the 2-D histogram
  of co-located pixel pairs. Table 1's formula lacks the minus sign; we use the entropy.
- ``mi`` (distance): MI = H(x1) + H(x2) - JE(x1, x2) (Table 1). Larger = more similar.
- ``kl`` (distance): KL(x1 ‖ x2) = Σ p1(i) log2(p1(i)/p2(i)) with x1 the item and x2 the
  reference; Table 1 writes x_1i in front of the log, we read it as p1(i) = b_x1(i). Both
  histograms are smoothed additively, p <- (p + eps) / (1 + bins·eps), ``eps`` = 1e-10 by
  default (0 gives +inf where the reference has an empty bin the item uses).
- ``psnr`` (distance): 20 log10(MAX / sqrt(MSE)) with MAX = 1 (images in [0, 1]). Larger =
  more similar; an item identical to the reference (the reference itself) scores +inf, which
  ranks as the largest value: last in ascending order, first in descending.
- ``max_norm`` (distance): Table 1 writes max(x1, ..., xn); as a distance we use the ℓ∞ norm
  of the difference, max |x1 - x2| over the item's pixels and channels.
- ``mse`` (distance): mean of (x1 - x2)² over the item's pixels and channels.

Histograms are ``bincount`` on an offset index (one call for all items). The joint entropy
never materializes the bins² joint histogram: the co-located pairs' codes i·bins + j are
sorted per item and the run lengths are the nonzero counts, so memory is O(items × pixels)
whatever ``bins`` is; ``chunk`` (items per step, automatic by default) bounds it further,
e.g. ImageNet 224 px with 16 px patches, batch 64: 12 544 items × 768 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from patchbench.errors import check, is_int, is_number
from patchbench.registry import Registry
from patchbench.volumization.split import shape_of

_AUTO_CHUNK_ELEMENTS = 1 << 22  # pixel pairs sorted at once by the joint entropy (auto chunk)


def acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def check_bins(bins) -> int:
    check(is_int(bins) and bins >= 2, f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def quantize(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Bin indices ``clamp(floor(x·bins), 0, bins-1)`` (long) of values in [0, 1]."""
    bins = check_bins(bins)
    return (x * bins).floor_().clamp_(0, bins - 1).long()


def histogram(items: torch.Tensor, bins: int = 256, normalize: bool = True) -> torch.Tensor:
    """Histograms (..., bins) of items (..., C, h, w), all channels of an item pooled: counts, or
    b_x (Table 1) normalized to sum 1. One ``bincount`` on an offset index, no loop over items."""
    check(items.ndim >= 3, f"items must be (..., C, h, w), got shape {shape_of(items)}")
    q = quantize(items, bins).flatten(-3)
    lead, p = q.shape[:-1], q.shape[-1]
    q = q.reshape(-1, p)
    m = q.shape[0]
    offset = torch.arange(m, device=q.device)[:, None] * bins
    counts = torch.bincount((q + offset).reshape(-1), minlength=m * bins).reshape(*lead, bins)
    if not normalize:
        return counts
    return counts.to(acc_dtype(items.device)) / p


def _entropy_from_counts(counts: torch.Tensor, total: int) -> torch.Tensor:
    """-Σ p log2 p over the last dim, p = counts / total (empty bins contribute 0)."""
    p = counts.to(acc_dtype(counts.device)) / total
    return -torch.special.xlogy(p, p).sum(-1) / math.log(2.0)


def entropy(items: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """H(x) = -Σ b_x(i) log2 b_x(i) in bits per item (..., C, h, w) -> (...) (Table 1; see the
    module docstring for Table 1's N·H form)."""
    return _entropy_from_counts(histogram(items, bins, normalize=False), items.shape[-3:].numel())


def check_chunk(chunk) -> None:
    check(chunk is None or (is_int(chunk) and chunk >= 1), f"chunk must be an integer >= 1 or None (automatic), got {chunk!r}")


def joint_entropy(x1: torch.Tensor, x2: torch.Tensor, bins: int = 256, chunk: int | None = None) -> torch.Tensor:
    """JE(x1, x2) = -Σ p(i, j) log2 p(i, j), p the joint histogram of co-located pixels (all
    channels pooled) of items (..., C, h, w) broadcast together -> (...).

    The bins² histogram is never built: per item the codes i·bins + j are sorted and the run
    lengths are the nonzero counts. ``chunk`` items at a time (None: as many as keep about 4M
    pixel pairs in flight)."""
    bins = check_bins(bins)
    check_chunk(chunk)
    x1, x2 = torch.broadcast_tensors(x1, x2)
    check(x1.ndim >= 3, f"items must be (..., C, h, w), got shape {shape_of(x1)}")
    lead, p = x1.shape[:-3], x1.shape[-3:].numel()
    code = (quantize(x1, bins) * bins + quantize(x2, bins)).reshape(-1, p)
    step = chunk or max(1, _AUTO_CHUNK_ELEMENTS // p)
    out = [_run_entropy(part, p) for part in code.split(step)]
    return torch.cat(out).reshape(lead) if out else torch.zeros(lead, dtype=acc_dtype(x1.device), device=x1.device)


def _run_entropy(code: torch.Tensor, p: int) -> torch.Tensor:
    """Entropy of the multiset of codes in each row (M, P): sorted, run lengths counted."""
    s = code.sort(dim=1).values
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    run = new.cumsum(1) - 1
    counts = torch.zeros(s.shape, dtype=torch.long, device=s.device).scatter_add_(1, run, torch.ones_like(run))
    return _entropy_from_counts(counts, p)


def mutual_information(x1: torch.Tensor, x2: torch.Tensor, bins: int = 256, chunk: int | None = None) -> torch.Tensor:
    """MI(x1, x2) = H(x1) + H(x2) - JE(x1, x2) in bits (Table 1)."""
    return entropy(x1, bins) + entropy(x2, bins) - joint_entropy(x1, x2, bins, chunk)


def kl_divergence(x1: torch.Tensor, x2: torch.Tensor, bins: int = 256, eps: float = 1e-10) -> torch.Tensor:
    """KL(x1 ‖ x2) = Σ p1 log2(p1 / p2) in bits over the item histograms, both smoothed
    p <- (p + eps) / (1 + bins·eps) (Table 1; eps = 0: no smoothing, +inf possible)."""
    check(is_number(eps) and eps >= 0, f"eps must be a number >= 0, got {eps!r}")
    p1 = (histogram(x1, bins) + eps) / (1 + bins * eps)
    p2 = (histogram(x2, bins) + eps) / (1 + bins * eps)
    p1, p2 = torch.broadcast_tensors(p1, p2)
    return (torch.special.xlogy(p1, p1) - torch.special.xlogy(p1, p2)).sum(-1) / math.log(2.0)


def mse(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Mean over the item's channels and pixels of (x1 - x2)² (Table 1)."""
    d = x1.to(acc_dtype(x1.device)) - x2.to(acc_dtype(x2.device))
    return d.square().flatten(-3).mean(-1)


def psnr(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """20 log10(MAX / sqrt(MSE)) = -10 log10(MSE) with MAX = 1 (Table 1); identical items: +inf."""
    return -10.0 * torch.log10(mse(x1, x2))


def max_norm(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """ℓ∞ norm of the difference, max |x1 - x2| over the item (Table 1's max(x1..xn) read as a distance)."""
    return (x1 - x2).abs().flatten(-3).amax(-1).to(acc_dtype(x1.device))


@dataclass(frozen=True)
class Metric:
    """A Table 1 measure: ``kind`` "standalone" (m(x)) or "distance" (m(x, reference)); ``fn``
    takes the keyword options named in ``options`` (of bins, eps, chunk)."""

    name: str
    kind: str
    fn: Callable[..., torch.Tensor]
    options: tuple[str, ...] = field(default=())

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor | None = None, **options) -> torch.Tensor:
        kwargs = {k: v for k, v in options.items() if k in self.options}
        if self.kind == "standalone":
            return self.fn(x1, **kwargs)
        check(x2 is not None, f"metric {self.name} is a distance: it needs a reference item")
        return self.fn(x1, x2, **kwargs)


METRICS: Registry = Registry("metric").register_all([
    Metric("entropy", "standalone", entropy, ("bins",)),
    Metric("mi", "distance", mutual_information, ("bins", "chunk")),
    Metric("kl", "distance", kl_divergence, ("bins", "eps")),
    Metric("psnr", "distance", psnr),
    Metric("max_norm", "distance", max_norm),
    Metric("joint_entropy", "distance", joint_entropy, ("bins", "chunk")),
    Metric("mse", "distance", mse),
])
get_metric = METRICS.lookup
