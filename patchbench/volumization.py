"""Volumization (BMVC 2023 Sec. 4.1, Eq. 3-4) and the ranking metrics of Table 1.

V: (x, H, W, C) -> (x'_i, p_h, p_w, C, N) (Eq. 3) splits an image into N non-overlapping
p_h×p_w patches, ranks them by a metric m, and stacks them along a depth axis. Here images are
NCHW and a volume is ``(B, C, N, p_h, p_w)`` — the Conv3d layout, depth = the N patches in ranked
order.

* :func:`split_patches` / :func:`merge_patches`: the patches are exactly the image (Eq. 4, pixel
  conservation); the round trip is bit-exact. Patches are numbered in row-major grid order.
  When p_h ∤ H or p_w ∤ W, ``pad`` decides: ``"none"`` refuses, ``"zero"`` / ``"reflect"`` /
  ``"replicate"`` pad the bottom/right edge to the next multiple, so the padded pixels belong
  to the last row/column of patches (and take part in their metrics); :func:`merge_patches`
  crops them off again when given the image size.
* :data:`METRICS`: the measures of Table 1, batched over items ``(..., C, h, w)``. The
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
* Ranking (Sec. 4.3, Eq. 11-13, identical for patches and for the syllabus): :func:`scores`
  computes m per item; a distance metric measures each item against a reference — a given
  tensor, or by default (``"lowest-entropy"``) the item of lowest entropy among the items being
  ranked (the set is dim -4 of ``(..., n, C, h, w)``: the patches of one image, or the images
  of one batch; ties -> lowest index). :func:`rank` is a stable sort: equal scores keep their
  index order. Scores are float64 (float32 on devices without it).
* :class:`Volumizer`: the module V. The ranking is piecewise constant in the pixels, so the
  forward pass treats the order as a constant and the gradient w.r.t. the pixels flows through
  the gather of patches (exact almost everywhere: wherever the order does not change under an
  infinitesimal perturbation) — what a white-box attacker differentiates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.errors import PatchbenchError, check, is_int, is_number

PADS = ("none", "zero", "reflect", "replicate")
ORDERS = ("ascending", "descending")
REFERENCES = ("lowest-entropy",)
_PAD_MODES = {"zero": "constant", "reflect": "reflect", "replicate": "replicate"}
_AUTO_CHUNK_ELEMENTS = 1 << 22  # pixel pairs sorted at once by the joint entropy (auto chunk)


# --------------------------------------------------------------------------------------------
# patches (Eq. 3-4)


def _patch_size(patch) -> tuple[int, int]:
    if is_int(patch):
        patch = (patch, patch)
    check(isinstance(patch, (tuple, list)) and len(patch) == 2 and all(is_int(p) and p >= 1 for p in patch),
          f"patch must be an integer >= 1 or a pair (ph, pw) of them, got {patch!r}")
    return int(patch[0]), int(patch[1])


def split_patches(x: torch.Tensor, patch, pad: str = "none") -> tuple[torch.Tensor, tuple[int, int]]:
    """Split images (B, C, H, W) into ``(patches (B, N, C, ph, pw), grid (gh, gw))``, N = gh·gw
    non-overlapping patches in row-major grid order (patch n covers rows ⌊n/gw⌋·ph.., columns
    (n mod gw)·pw..); Eq. 4: the patches are exactly the image.

    ``patch``: an int or (ph, pw). When ph ∤ H or pw ∤ W, ``pad="none"`` raises; ``"zero"``,
    ``"reflect"`` or ``"replicate"`` pads the bottom/right edge to the next multiple, so the
    padded pixels belong to the last row/column of patches. A pure reshape/permute: no loops.
    """
    check(isinstance(x, torch.Tensor) and x.ndim == 4, f"split_patches expects images (B, C, H, W), got shape {_shape(x)}")
    ph, pw = _patch_size(patch)
    check(pad in PADS, f"pad must be one of {', '.join(PADS)}, got {pad!r}")
    b, c, h, w = x.shape
    gh, gw = -(-h // ph), -(-w // pw)
    ph_pad, pw_pad = gh * ph - h, gw * pw - w
    if ph_pad or pw_pad:
        check(pad != "none", f"image size {h}×{w} is not a multiple of the patch size {ph}×{pw}; pass pad='zero', 'reflect' or "
                             f"'replicate' (pads bottom/right to {gh * ph}×{gw * pw}) or a patch size that divides it")
        check(pad != "reflect" or (ph_pad < h and pw_pad < w),
              f"pad='reflect' needs padding smaller than the image ({h}×{w} padded by {ph_pad}×{pw_pad}); use 'replicate' or 'zero'")
        x = F.pad(x, (0, pw_pad, 0, ph_pad), mode=_PAD_MODES[pad])
    patches = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, ph, pw)
    return patches, (gh, gw)


def merge_patches(patches: torch.Tensor, grid: tuple[int, int], image_size=None) -> torch.Tensor:
    """The exact inverse of :func:`split_patches`: (B, N, C, ph, pw) in row-major grid order ->
    (B, C, gh·ph, gw·pw), cropped to ``image_size`` (int or (H, W)) when given (drops padding)."""
    check(isinstance(patches, torch.Tensor) and patches.ndim == 5,
          f"merge_patches expects patches (B, N, C, ph, pw), got shape {_shape(patches)}")
    check(isinstance(grid, (tuple, list)) and len(grid) == 2 and all(is_int(g) and g >= 1 for g in grid),
          f"grid must be a pair (gh, gw) of integers >= 1, got {grid!r}")
    b, n, c, ph, pw = patches.shape
    gh, gw = grid
    check(n == gh * gw, f"{n} patches do not fill a {gh}×{gw} grid")
    x = patches.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * ph, gw * pw)
    if image_size is not None:
        h, w = _patch_size(image_size)
        check(h <= gh * ph and w <= gw * pw, f"image_size {h}×{w} is larger than the patches' {gh * ph}×{gw * pw}")
        x = x[..., :h, :w]
    return x


def _shape(x) -> str:
    return tuple(x.shape).__repr__() if isinstance(x, torch.Tensor) else type(x).__name__


# --------------------------------------------------------------------------------------------
# histograms and metrics (Table 1)


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _check_bins(bins) -> int:
    check(is_int(bins) and bins >= 2, f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def quantize(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Bin indices ``clamp(floor(x·bins), 0, bins-1)`` (long) of values in [0, 1]."""
    bins = _check_bins(bins)
    return (x * bins).floor_().clamp_(0, bins - 1).long()


def histogram(items: torch.Tensor, bins: int = 256, normalize: bool = True) -> torch.Tensor:
    """Histograms (..., bins) of items (..., C, h, w), all channels of an item pooled: counts, or
    b_x (Table 1) normalized to sum 1. One ``bincount`` on an offset index, no loop over items."""
    check(items.ndim >= 3, f"items must be (..., C, h, w), got shape {_shape(items)}")
    q = quantize(items, bins).flatten(-3)
    lead, p = q.shape[:-1], q.shape[-1]
    q = q.reshape(-1, p)
    m = q.shape[0]
    offset = torch.arange(m, device=q.device)[:, None] * bins
    counts = torch.bincount((q + offset).reshape(-1), minlength=m * bins).reshape(*lead, bins)
    if not normalize:
        return counts
    return counts.to(_acc_dtype(items.device)) / p


def _entropy_from_counts(counts: torch.Tensor, total: int) -> torch.Tensor:
    """-Σ p log2 p over the last dim, p = counts / total (empty bins contribute 0)."""
    p = counts.to(_acc_dtype(counts.device)) / total
    return -torch.special.xlogy(p, p).sum(-1) / math.log(2.0)


def entropy(items: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """H(x) = -Σ b_x(i) log2 b_x(i) in bits per item (..., C, h, w) -> (...) (Table 1; see the
    module docstring for Table 1's N·H form)."""
    return _entropy_from_counts(histogram(items, bins, normalize=False), items.shape[-3:].numel())


def _check_chunk(chunk) -> None:
    check(chunk is None or (is_int(chunk) and chunk >= 1), f"chunk must be an integer >= 1 or None (automatic), got {chunk!r}")


def joint_entropy(x1: torch.Tensor, x2: torch.Tensor, bins: int = 256, chunk: int | None = None) -> torch.Tensor:
    """JE(x1, x2) = -Σ p(i, j) log2 p(i, j), p the joint histogram of co-located pixels (all
    channels pooled) of items (..., C, h, w) broadcast together -> (...).

    The bins² histogram is never built: per item the codes i·bins + j are sorted and the run
    lengths are the nonzero counts. ``chunk`` items at a time (None: as many as keep about 4M
    pixel pairs in flight)."""
    bins = _check_bins(bins)
    _check_chunk(chunk)
    x1, x2 = torch.broadcast_tensors(x1, x2)
    check(x1.ndim >= 3, f"items must be (..., C, h, w), got shape {_shape(x1)}")
    lead, p = x1.shape[:-3], x1.shape[-3:].numel()
    code = (quantize(x1, bins) * bins + quantize(x2, bins)).reshape(-1, p)
    step = chunk or max(1, _AUTO_CHUNK_ELEMENTS // p)
    out = [_run_entropy(part, p) for part in code.split(step)]
    return torch.cat(out).reshape(lead) if out else torch.zeros(lead, dtype=_acc_dtype(x1.device), device=x1.device)


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
    d = x1.to(_acc_dtype(x1.device)) - x2.to(_acc_dtype(x2.device))
    return d.square().flatten(-3).mean(-1)


def psnr(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """20 log10(MAX / sqrt(MSE)) = -10 log10(MSE) with MAX = 1 (Table 1); identical items: +inf."""
    return -10.0 * torch.log10(mse(x1, x2))


def max_norm(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """ℓ∞ norm of the difference, max |x1 - x2| over the item (Table 1's max(x1..xn) read as a distance)."""
    return (x1 - x2).abs().flatten(-3).amax(-1).to(_acc_dtype(x1.device))


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


METRICS: dict[str, Metric] = {
    "entropy": Metric("entropy", "standalone", entropy, ("bins",)),
    "mi": Metric("mi", "distance", mutual_information, ("bins", "chunk")),
    "kl": Metric("kl", "distance", kl_divergence, ("bins", "eps")),
    "psnr": Metric("psnr", "distance", psnr),
    "max_norm": Metric("max_norm", "distance", max_norm),
    "joint_entropy": Metric("joint_entropy", "distance", joint_entropy, ("bins", "chunk")),
    "mse": Metric("mse", "distance", mse),
}


def get_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise PatchbenchError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return METRICS[metric]


# --------------------------------------------------------------------------------------------
# ranking (Sec. 4.3, Eq. 11-13)


def reference_items(items: torch.Tensor, reference="lowest-entropy", bins: int = 256) -> torch.Tensor:
    """The reference of each ranked set of items (..., n, C, h, w) -> (..., 1, C, h, w):
    ``"lowest-entropy"`` picks the item of least entropy in the set (ties -> lowest index); a
    tensor (C, h, w) is one reference for all sets, (..., C, h, w) one per set."""
    check(items.ndim >= 4, f"ranking a set needs items (..., n, C, h, w), got shape {_shape(items)}")
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
    _check_bins(bins)
    _check_chunk(chunk)
    check(isinstance(items, torch.Tensor) and items.ndim >= 3, f"items must be (..., C, h, w), got shape {_shape(items)}")
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


# --------------------------------------------------------------------------------------------
# the volumizer


class Volumizer(nn.Module):
    """V of Eq. 3: images (B, C, H, W) -> volumes (B, C, N, ph, pw), the N patches in the order
    of ``metric`` (Table 1) and ``order`` (Sec. 4.1); ``reference`` for distance metrics.

    Gradient: the ranking is piecewise constant in the pixels, so :meth:`forward` computes the
    order under ``no_grad`` and treats it as a constant; the gradient w.r.t. the pixels flows
    through the gather of patches — exact almost everywhere (wherever an infinitesimal change of
    the pixels leaves the order as it is). A white-box attacker differentiates exactly this.
    """

    def __init__(self, patch=16, metric: str = "entropy", order: str = "ascending", bins: int = 256,
                 reference="lowest-entropy", pad: str = "none", eps: float = 1e-10, chunk: int | None = None):
        super().__init__()
        self.patch = _patch_size(patch)
        get_metric(metric)
        if order not in ORDERS:
            raise PatchbenchError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
        check(pad in PADS, f"pad must be one of {', '.join(PADS)}, got {pad!r}")
        check(is_number(eps) and eps >= 0, f"eps must be a number >= 0, got {eps!r}")
        _check_chunk(chunk)
        self.metric, self.order, self.bins, self.pad, self.eps, self.chunk = metric, order, _check_bins(bins), pad, eps, chunk
        if isinstance(reference, torch.Tensor):
            check(reference.ndim == 3 and tuple(reference.shape[-2:]) == self.patch,
                  f"reference must be one patch (C, {self.patch[0]}, {self.patch[1]}), got {tuple(reference.shape)}")
            self.register_buffer("reference", reference.detach().clone())
        else:
            check(reference in REFERENCES, f"reference must be a tensor or one of {', '.join(REFERENCES)}, got {reference!r}")
            self.reference = reference

    def params(self) -> dict:
        """The parameters that define V (for result rows)."""
        ref = self.reference if isinstance(self.reference, str) else f"tensor{tuple(self.reference.shape)}"
        ph, pw = self.patch
        return {"patch": ph if ph == pw else [ph, pw], "metric": self.metric, "order": self.order, "bins": self.bins,
                "reference": ref, "pad": self.pad, "eps": self.eps}

    def _order(self, patches: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            s = scores(patches.detach(), self.metric, self.bins, self.reference, self.eps, self.chunk)
            return rank(s, self.order)

    def order_of(self, x: torch.Tensor) -> torch.Tensor:
        """The ranked patch indices (B, N) (long; row-major grid numbering), computed without grad."""
        return self._order(split_patches(x, self.patch, self.pad)[0])

    def volumize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """``(volume (B, C, N, ph, pw), order (B, N), grid)``: what :meth:`invert` needs."""
        patches, grid = split_patches(x, self.patch, self.pad)
        order = self._order(patches)
        ranked = torch.take_along_dim(patches, order[:, :, None, None, None], dim=1)
        return ranked.transpose(1, 2), order, grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.volumize(x)[0]

    @staticmethod
    def invert(volume: torch.Tensor, order: torch.Tensor, grid: tuple[int, int], image_size=None) -> torch.Tensor:
        """The images back from ``volume`` (B, C, N, ph, pw) and its ``order`` (exact; crops the
        padding when ``image_size`` is given)."""
        check(volume.ndim == 5 and order.shape == volume.shape[:1] + volume.shape[2:3],
              f"volume (B, C, N, ph, pw) and order (B, N) do not match: {_shape(volume)}, {_shape(order)}")
        inverse = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        patches = torch.take_along_dim(volume.transpose(1, 2), inverse[:, :, None, None, None], dim=1)
        return merge_patches(patches, grid, image_size)
