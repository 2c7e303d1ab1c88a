"""Border handling shared by the image-filter baselines of ICAART 2022 Fig. 9.

ICAART 2022 Sec. 4.3 runs "JPEG compression from Pillow, Gaussian Filter (GF) and Median Filter
(MF), Bilateral Filter (BF) [...] from scikit-learn" (the filters are scipy.ndimage /
scikit-image functions). Here each is re-implemented batched in torch on the tensor's device, one
module per filter, and checked against that library in ``tests/test_baseline_defenses.py``:

* :mod:`~patchbench.defenses.jpeg` — a real libjpeg round trip (torchvision.io), bytes as Pillow would get them;
* :mod:`~patchbench.defenses.gaussian` — ``scipy.ndimage.gaussian_filter`` per channel (separable passes);
* :mod:`~patchbench.defenses.median` — ``scipy.ndimage.median_filter`` per channel (pad + min/max network or unfold);
* :mod:`~patchbench.defenses.bilateral` — ``skimage.restoration.denoise_bilateral`` incl. its quirks.

Border modes keep the names of the library each filter follows (they disagree!):
scipy.ndimage ``reflect`` (d c b a | a b c d | d c b a) is numpy.pad ``symmetric``; scipy
``mirror`` (d c b | a b c d | c b a) is numpy ``reflect`` and torch ``F.pad(mode="reflect")``.
:func:`pad2d` builds every mode by index arithmetic, so any pad width works (torch's reflect
pad needs pad < size).

None of these filters has a smoothing factor: ``uses_lambda`` is False, the work happens once in
``maps`` (``{"out": ...}``) and the base class's ``apply`` returns it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# library mode name -> index rule used by pad2d
SCIPY_MODES = {"reflect": "symmetric", "mirror": "mirror", "nearest": "edge", "constant": "constant",
               "wrap": "wrap", "grid-wrap": "wrap"}
NUMPY_MODES = {"symmetric": "symmetric", "reflect": "mirror", "edge": "edge", "constant": "constant", "wrap": "wrap"}


def border_index(n: int, before: int, after: int, rule: str, device) -> torch.Tensor:
    """Source index of every position of an axis of length n padded by (before, after)."""
    i = torch.arange(-before, n + after, device=device)
    if rule == "edge":
        return i.clamp(0, n - 1)
    if rule == "wrap":
        return i.remainder(n)
    if rule == "symmetric":  # half-sample symmetric, period 2n
        i = i.remainder(2 * n)
        return torch.where(i < n, i, 2 * n - 1 - i)
    if rule == "mirror":  # whole-sample symmetric, period 2n - 2
        if n == 1:
            return torch.zeros_like(i)
        i = i.remainder(2 * n - 2)
        return torch.where(i < n, i, 2 * n - 2 - i)
    raise ValueError(rule)


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, rule: str, cval: float = 0.0) -> torch.Tensor:
    """Pad the last two axes; ``rule`` is one of constant, edge, wrap, symmetric, mirror."""
    if rule == "constant":
        return F.pad(x, (left, right, top, bottom), value=cval)
    h, w = x.shape[-2:]
    rows = border_index(h, top, bottom, rule, x.device)
    cols = border_index(w, left, right, rule, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)
