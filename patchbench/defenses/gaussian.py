"""Gaussian filter baseline of ICAART 2022 Fig. 9 ("GF"), as ``scipy.ndimage.gaussian_filter``.

Batched in torch on the tensor's device, each channel filtered alone (separable passes); checked
against scipy in ``tests/test_baseline_defenses.py``. Border modes use scipy's names (see
:mod:`patchbench.defenses.padding`). No smoothing factor: the output is computed in ``maps``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from patchbench.defenses.base import OUT, Defense, register_defense
from patchbench.defenses.padding import SCIPY_MODES, pad2d
from patchbench.errors import is_number


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's kernel: radius int(truncate·σ + 0.5), exp(-x²/2σ²) normalized to sum 1 (float64)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / sigma**2 * t**2)
    return phi / phi.sum()


def gaussian_filter(x: torch.Tensor, sigma: float = 1.0, truncate: float = 4.0, mode: str = "reflect",
                    cval: float = 0.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(x, sigma=(0, 0, σ, σ), truncate, mode, cval)``: each channel
    filtered alone, along H then W. ``mode`` uses scipy's names.

    Each 1-D pass is a sum of shifted slices times the taps (2r+1 elementwise passes) rather
    than conv2d, whose CPU algorithm depends on the batch size: this keeps an image's output
    bit-identical whatever its batch mates."""
    if sigma == 0:
        return x.clone()
    k = gaussian_kernel1d(sigma, truncate).tolist()
    r = (len(k) - 1) // 2
    h, w = x.shape[-2:]
    y = pad2d(x, r, r, r, r, SCIPY_MODES[mode], cval)
    y = sum(k[i] * y[..., i:i + h, :] for i in range(2 * r + 1))
    return sum(k[i] * y[..., :, i:i + w] for i in range(2 * r + 1))


@register_defense
@dataclasses.dataclass
class GaussianFilter(Defense):
    """Gaussian filter (Xu et al. 2017 feature squeezing; ICAART Fig. 9 "GF").

    Defaults follow scipy.ndimage.gaussian_filter: ``truncate`` 4, ``mode`` "reflect"
    (half-sample symmetric), ``cval`` 0; ``sigma`` 1 px (the paper gives no σ).
    """

    name: ClassVar[str] = "gaussian"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"  # a linear filter: autograd through the convolutions

    sigma: float = 1.0
    truncate: float = 4.0
    mode: str = "reflect"  # scipy.ndimage names: reflect | mirror | nearest | constant | wrap | grid-wrap
    cval: float = 0.0

    def validate(self):
        self.require("sigma", is_number(self.sigma) and self.sigma >= 0, "a number >= 0")
        self.require("truncate", is_number(self.truncate) and self.truncate > 0, "a number > 0")
        self.require_choice("mode", SCIPY_MODES)
        self.require("cval", is_number(self.cval) and 0 <= self.cval <= 1, "in [0, 1]")

    def maps(self, x, model=None):
        return {OUT: gaussian_filter(x, float(self.sigma), float(self.truncate), self.mode, self.cval).clamp(0, 1)}
