"""Binary morphology with a 3×3 square, batched on the device (max pooling), written once.

Two border rules, because the defenses that use them follow different references:

* ``border="ignore"``: pixels outside the image are ignored (scikit-image's ``binary_erosion``
  and ``binary_dilation``), so an object touching the border is not eroded from outside — SLGS's
  Eq. 8-9;
* ``border="zero"``: outside the image counts as 0 (scipy.ndimage's default ``border_value=0``),
  so erosion removes pixels on the image border — Hayes' DW mask.

Dilation treats the outside as 0 in both rules (``max_pool2d`` pads with −∞). Masks are
N×1×H×W, bool or float 0/1; the result has the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BORDERS = ("ignore", "zero")


def _as_float(mask: torch.Tensor) -> torch.Tensor:
    return mask.float() if mask.dtype == torch.bool else mask


def _like(result: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return result > 0.5 if mask.dtype == torch.bool else result


def dilate(mask: torch.Tensor, times: int = 1) -> torch.Tensor:
    """Binary dilation, ``times`` times (outside the image never counts)."""
    m = _as_float(mask)
    for _ in range(times):
        m = F.max_pool2d(m, 3, stride=1, padding=1)
    return _like(m, mask)


def erode(mask: torch.Tensor, times: int = 1, border: str = "ignore") -> torch.Tensor:
    """Binary erosion, ``times`` times, as 1 − dilation of the complement (see the module doc)."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    inv = 1 - _as_float(mask)
    for _ in range(times):
        if border == "zero":
            inv = F.max_pool2d(F.pad(inv, (1, 1, 1, 1), value=1.0), 3, stride=1)
        else:
            inv = F.max_pool2d(inv, 3, stride=1, padding=1)
    return _like(1 - inv, mask)
