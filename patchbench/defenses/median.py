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

from patchbench.defenses.base import OUT, Defense, register_defense
from patchbench.defenses.padding import SCIPY_MODES, border_index, pad2d
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
    if not (torch.is_grad_enabled() and y.requires_grad):
        out = y.new_empty(*y.shape[:-2], h, w)
        _network_into(y, out, _buffers(y, h, w))
        return out
    a, b, c = y[..., 0:h, :], y[..., 1:h + 1, :], y[..., 2:h + 2, :]
    lo1, hi1 = torch.minimum(a, b), torch.maximum(a, b)
    lo, t = torch.minimum(lo1, c), torch.maximum(lo1, c)
    mid, hi = torch.minimum(hi1, t), torch.maximum(hi1, t)
    cols = lambda v: (v[..., 0:w], v[..., 1:w + 1], v[..., 2:w + 2])  # noqa: E731
    (l0, l1, l2), (m0, m1, m2), (h0, h1, h2) = cols(lo), cols(mid), cols(hi)
    max_lo = torch.maximum(torch.maximum(l0, l1), l2)
    min_hi = torch.minimum(torch.minimum(h0, h1), h2)
    return _med3(max_lo, _med3(m0, m1, m2), min_hi)


def _buffers(y: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """The network's scratch: 4 buffers shaped like a row-shifted view of ``y``, 4 like the output."""
    lead = y.shape[:-2]
    return [y.new_empty(*lead, h, w + 2) for _ in range(4)] + [y.new_empty(*lead, h, w) for _ in range(4)]


def _network_into(y: torch.Tensor, out: torch.Tensor, bufs: list[torch.Tensor]) -> None:
    """:func:`median3x3`'s network written into ``out``, every intermediate in ``bufs`` (no
    allocation: results overwrite operands that are no longer needed, safe for elementwise ops)."""
    h, w = out.shape[-2:]
    a, b, c = y[..., 0:h, :], y[..., 1:h + 1, :], y[..., 2:h + 2, :]
    b1, b2, b3, b4, c1, c2, c3, c4 = bufs
    torch.minimum(a, b, out=b1)
    torch.maximum(a, b, out=b2)
    torch.minimum(b1, c, out=b3)  # lo
    torch.maximum(b1, c, out=b1)
    torch.minimum(b2, b1, out=b4)  # mid
    torch.maximum(b2, b1, out=b2)  # hi
    torch.maximum(b3[..., 0:w], b3[..., 1:w + 1], out=c1)
    torch.maximum(c1, b3[..., 2:w + 2], out=c1)  # max of the lows
    torch.minimum(b2[..., 0:w], b2[..., 1:w + 1], out=c2)
    torch.minimum(c2, b2[..., 2:w + 2], out=c2)  # min of the highs
    m0, m1, m2 = b4[..., 0:w], b4[..., 1:w + 1], b4[..., 2:w + 2]
    torch.minimum(m0, m1, out=c3)
    torch.maximum(m0, m1, out=c4)
    torch.minimum(c4, m2, out=c4)
    torch.maximum(c3, c4, out=c3)  # med3 of the mids
    torch.minimum(c1, c3, out=c4)  # med3(max lo, med mid, min hi)
    torch.maximum(c1, c3, out=c1)
    torch.minimum(c1, c2, out=c1)
    torch.maximum(c4, c1, out=out)


CHUNK = 1 << 18  # elements of a padded chunk: its ~9 buffers stay in the CPU's cache


def _median3x3_chunked(x: torch.Tensor, rule: str, cval: float) -> torch.Tensor:
    """:func:`median3x3` of ``x`` padded by one pixel under ``rule``, a few image planes at a time:
    the pad and the 18 passes of each chunk run on buffers allocated once and small enough to stay
    in cache (on the whole 16×3×400×400 batch each pass streamed 31 MB from memory, and each fresh
    buffer page-faulted: 3× slower on a CPU). Planes are independent, so this is the same
    network on the same values: bit-identical to :func:`median3x3` of :func:`pad2d`."""
    n, c, h, w = x.shape
    planes = x.reshape(n * c, h, w)
    out = torch.empty_like(planes)
    k = max(1, min(n * c, CHUNK // ((h + 2) * (w + 2))))
    buf = x.new_empty(k, h + 2, w + 2)
    bufs = _buffers(buf, h, w)
    if rule != "constant":  # source row / column of the one-pixel border, as pad2d indexes it
        rows = border_index(h, 1, 1, rule, "cpu").tolist()
        cols = border_index(w, 1, 1, rule, "cpu").tolist()
    for s in range(0, n * c, k):
        xc = planes[s:s + k]
        kk = len(xc)
        y = buf[:kk]
        y[:, 1:-1, 1:-1].copy_(xc)
        if rule == "constant":
            y[:, 0].fill_(cval), y[:, -1].fill_(cval), y[:, :, 0].fill_(cval), y[:, :, -1].fill_(cval)
        else:
            y[:, 0, 1:-1].copy_(xc[:, rows[0]])
            y[:, -1, 1:-1].copy_(xc[:, rows[-1]])
            y[:, :, 0].copy_(y[:, :, 1 + cols[0]])  # corners from the padded rows, as pad2d's second index
            y[:, :, -1].copy_(y[:, :, 1 + cols[-1]])
        _network_into(y, out[s:s + kk], [t[:kk] for t in bufs])
    return out.view(n, c, h, w)


def median_filter(x: torch.Tensor, size: int = 3, mode: str = "reflect", cval: float = 0.0) -> torch.Tensor:
    """``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode, cval)`` for odd ``size``.

    Size 3 (the Fig. 9 baseline) uses the min/max network of :func:`median3x3` (chunked in cache
    when no gradient is asked for); other sizes pad, gather the size×size windows with ``unfold``
    (size² copies of the batch) and take the median."""
    n, c, h, w = x.shape
    r = size // 2
    if size == 3 and not (torch.is_grad_enabled() and x.requires_grad) and h > 0 and w > 0:
        return _median3x3_chunked(x, SCIPY_MODES[mode], cval)
    y = pad2d(x, r, r, r, r, SCIPY_MODES[mode], cval)
    if size == 3:
        return median3x3(y)
    windows = y.unfold(2, size, 1).unfold(3, size, 1)  # N×C×H×W×size×size
    return windows.reshape(n, c, h, w, size * size).median(-1).values


@register_defense
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
