"""Binary morphology with a 3×3 square, batched on the device (shifted max / min), written once.

Two border rules, because the defenses that use them follow different references:

* ``border="ignore"``: pixels outside the image are ignored (scikit-image's ``binary_erosion``
  and ``binary_dilation``), so an object touching the border is not eroded from outside — SLGS's
  Eq. 8-9;
* ``border="zero"``: outside the image counts as 0 (scipy.ndimage's default ``border_value=0``),
  so erosion removes pixels on the image border — Hayes' DW mask.

Dilation treats the outside as 0 in both rules. Masks are N×1×H×W, bool or float 0/1; the result
has the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BORDERS = ("ignore", "zero")


def _extreme3x3(m: torch.Tensor, outside: float, largest: bool) -> torch.Tensor:
    """The max (``largest``) or min of every 3×3 window of ``m`` (N×C×H×W), pixels outside the image
    taken as ``outside``: separable, a pass over the columns' triples then the rows' (4 elementwise
    ops on the padded mask; ``max_pool2d`` on a one-channel 64×64 batch took 30× longer on a CPU).
    Bool masks use | and &, float masks max and min: exact either way."""
    pick = (torch.logical_or if largest else torch.logical_and) if m.dtype == torch.bool else \
        (torch.maximum if largest else torch.minimum)
    p = F.pad(m.to(torch.uint8) if m.dtype == torch.bool else m, (1, 1, 1, 1), value=outside)
    p = p.bool() if m.dtype == torch.bool else p
    rows = pick(pick(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
    return pick(pick(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def dilate(mask: torch.Tensor, times: int = 1) -> torch.Tensor:
    """Binary dilation, ``times`` times (outside the image never counts)."""
    for _ in range(times):
        mask = _extreme3x3(mask, 0, True)
    return mask


def erode(mask: torch.Tensor, times: int = 1, border: str = "ignore") -> torch.Tensor:
    """Binary erosion, ``times`` times: the 3×3 minimum, outside the image counting as 1 (``ignore``)
    or 0 (``zero``) (see the module doc)."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    for _ in range(times):
        mask = _extreme3x3(mask, 0 if border == "zero" else 1, False)
    return mask
