"""Median filter baseline of ICAART 2022 Fig. 9 ("MF"), as ``scipy.ndimage.median_filter``.

Batched in torch on the tensor's device, each channel filtered alone: a min/max network for the
3×3 window of the paper's baseline, pad + unfold + median for other sizes; checked against scipy
in ``tests/test_baseline_defenses.py``. Border modes use scipy's names (see
:mod:`patchbench.defenses.padding`). No smoothing factor: the output is computed in ``maps``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from patchbench.defenses.base import OUT, Defense
from patchbench.defenses.padding import SCIPY_MODES, pad2d
from patchbench.errors import is_int, is_number


def _med3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Elementwise median of three: max(min(a, b), min(max(a, b), c))."""
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def median3x3(y: torch.Tensor) -> torch.Tensor:
    """The 3×3 median of every interior pixel of the padded batch ``y`` (N×C×(H+2)×(W+2)) by a
    min/max network instead of a sort. Each vertical triple is sorted once (lo ≤ mid ≤ hi, shared by
    the three windows that contain it); the median of the nine values is then
    med3(max of the three lows, med3 of the three mids, min of the three highs), the exact
    sorted-columns median-of-9 network of hardware median filters (e.g. Smith 1996, Xilinx XAPP
    "median filter"); checked exhaustively on 0/1/2-valued windows and against scipy in the tests.
    18 elementwise passes over the batch, no copy per window."""
    h, w = y.shape[-2] - 2, y.shape[-1] - 2
    a, b, c = y[..., 0:h, :], y[..., 1:h + 1, :], y[..., 2:h + 2, :]
    if not (torch.is_grad_enabled() and y.requires_grad):
        return _median3x3_in_place(a, b, c, w)
    lo1, hi1 = torch.minimum(a, b), torch.maximum(a, b)
    lo, t = torch.minimum(lo1, c), torch.maximum(lo1, c)
    mid, hi = torch.minimum(hi1, t), torch.maximum(hi1, t)
    cols = lambda v: (v[..., 0:w], v[..., 1:w + 1], v[..., 2:w + 2])  # noqa: E731
    (l0, l1, l2), (m0, m1, m2), (h0, h1, h2) = cols(lo), cols(mid), cols(hi)
    max_lo = torch.maximum(torch.maximum(l0, l1), l2)
    min_hi = torch.minimum(torch.minimum(h0, h1), h2)
    return _med3(max_lo, _med3(m0, m1, m2), min_hi)


def _median3x3_in_place(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, w: int) -> torch.Tensor:
    """:func:`median3x3`'s network with 8 fresh tensors instead of 18 (each is a page-faulting
    allocation on the CPU, which cost more than the min/max itself): results overwrite inputs that
    are no longer needed (``out=`` an operand is safe for elementwise ops)."""
    lo1, hi1 = torch.minimum(a, b), torch.maximum(a, b)
    lo = torch.minimum(lo1, c)
    t = torch.maximum(lo1, c, out=lo1)
    mid = torch.minimum(hi1, t)
    hi = torch.maximum(hi1, t, out=hi1)
    max_lo = torch.maximum(lo[..., 0:w], lo[..., 1:w + 1])
    torch.maximum(max_lo, lo[..., 2:w + 2], out=max_lo)
    min_hi = torch.minimum(hi[..., 0:w], hi[..., 1:w + 1])
    torch.minimum(min_hi, hi[..., 2:w + 2], out=min_hi)
    m0, m1, m2 = mid[..., 0:w], mid[..., 1:w + 1], mid[..., 2:w + 2]
    med_mid = torch.minimum(m0, m1)
    upper = torch.maximum(m0, m1)
    torch.minimum(upper, m2, out=upper)
    torch.maximum(med_mid, upper, out=med_mid)  # med3(m0, m1, m2)
    low = torch.minimum(max_lo, med_mid, out=upper)  # med3(max_lo, med_mid, min_hi), into spent buffers
    torch.maximum(max_lo, med_mid, out=max_lo)
    torch.minimum(max_lo, min_hi, out=max_lo)
    return torch.maximum(low, max_lo, out=low)


def median_filter(x: torch.Tensor, size: int = 3, mode: str = "reflect", cval: float = 0.0) -> torch.Tensor:
    """``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode, cval)`` for odd ``size``.

    Size 3 (the Fig. 9 baseline) uses the min/max network of :func:`median3x3`; other sizes pad,
    gather the size×size windows with ``unfold`` (size² copies of the batch) and take the median."""
    n, c, h, w = x.shape
    r = size // 2
    y = pad2d(x, r, r, r, r, SCIPY_MODES[mode], cval)
    if size == 3:
        return median3x3(y)
    windows = y.unfold(2, size, 1).unfold(3, size, 1)  # N×C×H×W×size×size
    return windows.reshape(n, c, h, w, size * size).median(-1).values


@dataclasses.dataclass
class MedianFilter(Defense):
    """Median filter (Xu et al. 2017 feature squeezing; ICAART Fig. 9 "MF").

    ``size`` 3 (odd sizes only, so the median is one of the window's values), scipy's ``mode``
    "reflect" and ``cval`` 0.
    """

    name: ClassVar[str] = "median"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"  # the median selects one input per pixel: gradient 1 there (a.e.)

    size: int = 3
    mode: str = "reflect"  # scipy.ndimage names
    cval: float = 0.0

    def validate(self):
        self.require("size", is_int(self.size) and self.size >= 1 and self.size % 2 == 1, "an odd integer >= 1")
        self.require_choice("mode", SCIPY_MODES)
        self.require("cval", is_number(self.cval) and 0 <= self.cval <= 1, "in [0, 1]")

    def maps(self, x, model=None):
        return {OUT: median_filter(x, self.size, self.mode, self.cval)}
