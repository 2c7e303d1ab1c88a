"""Bilateral filter baseline of ICAART 2022 Fig. 9 ("BF"), as scikit-image's ``denoise_bilateral``.

Batched in torch on the tensor's device, including skimage's binned, channel-scaled range weights
and its off-centre spatial table (``compat="skimage"``), or the textbook filter
(``compat="exact"``); checked against skimage and a naive loop in
``tests/test_baseline_defenses.py``. Border modes use numpy.pad's names (see
:mod:`patchbench.defenses.padding`). No smoothing factor: the output is computed in ``maps``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from patchbench.defenses.base import OUT, Defense, register_defense
from patchbench.defenses.padding import NUMPY_MODES, pad2d
from patchbench.errors import is_int, is_number


def spatial_weights(win_size: int, sigma_spatial: float, compat: str = "skimage") -> torch.Tensor:
    """win_size×win_size spatial weights exp(-d²/2σ²), float64.

    ``compat="skimage"`` reproduces skimage's table exactly: it is built on the grid
    ``arange(-win_size // 2, win_size // 2 + 1)`` — win_size+1 points, since -5 // 2 == -3 — and
    read as ``lut[kr * win_size + kc]``, so the weights used are the first win_size² entries of a
    (win_size+1)² table: an off-centre, asymmetric kernel (checked against skimage 0.26 with an
    impulse image). ``compat="exact"`` is the centred Gaussian the skimage docstring describes.
    """
    if compat == "skimage":
        grid = torch.arange(-win_size // 2, win_size // 2 + 1, dtype=torch.float64)
    else:
        grid = torch.arange(-(win_size // 2), win_size // 2 + 1, dtype=torch.float64)
    rr, cc = torch.meshgrid(grid, grid, indexing="ij")
    lut = torch.exp(-0.5 * (rr**2 + cc**2) / sigma_spatial**2).flatten()
    return lut[: win_size * win_size].view(win_size, win_size)


def bilateral_filter(x: torch.Tensor, win_size: int | None = None, sigma_color: float | None = None,
                     sigma_spatial: float = 1.0, bins: int = 10000, mode: str = "constant", cval: float = 0.0,
                     compat: str = "skimage") -> torch.Tensor:
    """Bilateral filter of each image (Tomasi & Manduchi 1998, Eq. 3 with Gaussian closeness and
    similarity) following ``skimage.restoration.denoise_bilateral(img, win_size, sigma_color,
    sigma_spatial, bins, mode, cval, channel_axis=-1 if C == 3 else None)``.

    out(p) = Σ_q s(q - p)·r(‖x(q) - x(p)‖) x(q) / Σ_q s(q - p)·r(‖…‖) over the window, the colour
    distance taken over all channels together; with skimage's per-image choices: ``sigma_color``
    None → the image's std (all channels, ddof 0); a constant image is returned unchanged;
    out-of-image pixels come from ``mode`` (numpy.pad names, default constant 0) and take part
    in the sum like any other pixel. ``compat="skimage"`` also copies its look-up tables:
    r(d) = exp(-½ (k·m/bins)² / σc²) with bin k = min(⌊d·(bins // C) / m⌋, bins - 1) and m the
    image's max — the distance is binned *and* divided by the channel count C (``bins / dims`` is
    an integer division in its Cython code: found by matching its output) — and the off-centre
    spatial table of :func:`spatial_weights`. ``compat="exact"``: r(d) = exp(-½ d²/σc²),
    centred Gaussian s, ``bins`` unused.

    The range weight is symmetric, r(‖x(p) - x(p+o)‖) = r(‖x(p+o) - x(p)‖), so it is computed once
    per pair of offsets ±o (over the centres of +o and of -o together, on the padded image) and
    the centre's weight is s(0)·r(0) = s(0): 12 weight maps for a 5×5 window instead of 25, each a
    pass over the whole batch; s(±o) enters as the scalar factor of the accumulating addcmul.
    Memory O(batch).
    """
    n, c, h, w = x.shape
    if win_size is None:
        win_size = max(5, 2 * math.ceil(3 * sigma_spatial) + 1)
    s = spatial_weights(win_size, sigma_spatial, compat).tolist()
    flat = x.flatten(1)
    vmax, vmin = flat.amax(1).view(n, 1, 1, 1), flat.amin(1).view(n, 1, 1, 1)
    if sigma_color is None:
        dev = flat - flat.mean(1, keepdim=True)  # two passes, as numpy's std (torch.std: 10× slower here)
        sc = dev.mul_(dev).mean(1).sqrt_().view(n, 1, 1, 1)
    else:
        sc = torch.full_like(vmax, sigma_color)
    constant = vmax == vmin
    sc = torch.where(sc > 0, sc, torch.ones_like(sc))  # only constant images have std 0
    m = torch.where(vmax > 0, vmax, torch.ones_like(vmax))
    scale = (bins // c) / m  # distance -> bin, skimage's dist_scale
    coef = -0.5 * ((m / bins) / sc) ** 2 if compat == "skimage" else -0.5 / sc**2  # r = exp(coef·k²) or exp(coef·d²)
    r = win_size // 2
    xp = pad2d(x, r, r, r, r, NUMPY_MODES[mode], cval)
    num = x * s[r][r]  # the centre: r(0) = 1
    den = torch.full_like(x[:, :1], s[r][r])
    for a in range(r + 1):
        for b in range(-r, r + 1):
            if a == 0 and b <= 0:
                continue  # -o of a pair already visited, or the centre
            # q over the centres of +o (rows a.., cols max(b, 0)..) and of -o (rows 0.., cols max(-b, 0)..)
            ww, c0 = w + abs(b), r - max(b, 0)  # rows: h + a
            diff = xp[:, :, r - a:r + h, c0:c0 + ww] - xp[:, :, r:r + h + a, c0 + b:c0 + b + ww]
            if c == 1:
                d = diff.abs_()  # sqrt(x²) = |x| exactly
            else:
                d = diff.square_().sum(1, keepdim=True)
            if compat == "skimage":
                if c > 1:
                    d.sqrt_()
                d.mul_(scale).floor_().clamp_(max=bins - 1)
                d.square_()
            elif c == 1:
                d.square_()
            wgt = d.mul_(coef).exp_()
            for sign, rows, cols in ((1, slice(a, a + h), slice(max(b, 0), max(b, 0) + w)),
                                     (-1, slice(0, h), slice(max(-b, 0), max(-b, 0) + w))):
                wo, so = wgt[:, :, rows, cols], s[r + sign * a][r + sign * b]
                num.addcmul_(wo, xp[:, :, r + sign * a:r + sign * a + h, r + sign * b:r + sign * b + w], value=so)
                den.add_(wo, alpha=so)
    return torch.where(constant, x, num / den)


@register_defense
@dataclasses.dataclass
class BilateralFilter(Defense):
    """Bilateral filter (ICAART Fig. 9 "BF", scikit-image's ``denoise_bilateral``).

    Defaults are skimage's: ``win_size`` None → max(5, 2⌈3σs⌉ + 1), ``sigma_color`` None → the
    image's std, ``sigma_spatial`` 1, ``bins`` 10000, ``mode`` "constant" (numpy.pad names:
    constant | edge | symmetric | reflect | wrap), ``cval`` 0, ``compat`` "skimage" (its binned,
    channel-scaled range weights and off-centre spatial table, see :func:`bilateral_filter`);
    ``compat="exact"`` is the textbook filter. Difference from skimage: ``win_size`` must be odd
    (skimage silently uses win_size - 1 for even sizes).
    """

    name: ClassVar[str] = "bilateral"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "bpda"  # range weights from binned intensities: identity backward

    sigma_color: float | None = None
    sigma_spatial: float = 1.0
    win_size: int | None = None
    bins: int = 10000
    mode: str = "constant"  # numpy.pad names
    cval: float = 0.0
    compat: str = "skimage"  # skimage | exact

    def validate(self):
        self.require("sigma_color", self.sigma_color is None or (is_number(self.sigma_color) and self.sigma_color > 0),
                     "None (image std) or > 0")
        self.require("sigma_spatial", is_number(self.sigma_spatial) and self.sigma_spatial > 0, "> 0")
        self.require("win_size", self.win_size is None or (is_int(self.win_size) and self.win_size >= 1 and self.win_size % 2 == 1),
                     "None or an odd integer >= 1")
        self.require("bins", is_int(self.bins) and self.bins >= 1, "an integer >= 1")
        self.require_choice("mode", NUMPY_MODES)
        self.require("cval", is_number(self.cval) and 0 <= self.cval <= 1, "in [0, 1]")
        self.require_choice("compat", ("skimage", "exact"))

    def maps(self, x, model=None):
        out = bilateral_filter(x, self.win_size, self.sigma_color, float(self.sigma_spatial), self.bins,
                               self.mode, self.cval, self.compat)
        return {OUT: out.clamp(0, 1)}
