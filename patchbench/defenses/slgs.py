"""Saliency-map-based LGS (ICAART 2022 Eq. 6-10): LGS restricted to a cleaned saliency mask.

Reuses LGS's g(x) and apply (Eq. 5, :mod:`patchbench.defenses.lgs`); the saliency map M(x) is
:func:`patchbench.defenses.saliency.saliency_map` (Eq. 6), the mask morphology
:mod:`patchbench.defenses.morphology`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from patchbench.defenses.base import MASK, register_defense
from patchbench.defenses.lgs import SaliencyLGS
from patchbench.defenses.morphology import dilate, erode
from patchbench.errors import is_int


def saliency_mask(saliency: torch.Tensor, erosions: int = 2, dilations: int = 3) -> torch.Tensor:
    """D(x) of SLGS: Eq. 7 (binarize at the per-image mean of M, M >= mean), then ``erosions``
    erosions followed by ``dilations`` dilations (Eq. 8-9; the paper uses 2 then 3)."""
    mean = saliency.flatten(1).mean(1).view(-1, 1, 1, 1)
    mask = (saliency >= mean).to(saliency.dtype)
    return dilate(erode(mask, erosions, border="ignore"), dilations)


@register_defense
@dataclasses.dataclass
class SLGS(SaliencyLGS):
    """Saliency-map-based LGS, T(x) = x ⊙ clip(1 - λ·D(x) ⊙ g(x), 0, 1) (ICAART Eq. 10).

    M(x) is the gradient saliency of the top-5 cross entropy w.r.t. the [0, 1] input image
    (Eq. 6, :mod:`patchbench.defenses.saliency`); D(x) binarizes it at its per-image mean (Eq. 7)
    and cleans it with ``erosions`` erosions then ``dilations`` dilations of a 3×3 square
    (Eq. 8-9; paper: 2 and 3). At low resolution the binarized saliency is pixel-level speckle
    that two erosions empty completely, so small presets may lower ``erosions``.
    """

    name: ClassVar[str] = "slgs"
    # gradient: D(x) (binarized, eroded, dilated saliency) is piecewise constant in x, so it is
    # computed from the detached saliency and held constant (BPDA with the constant, the exact
    # a.e. gradient); g(x) is differentiated as for LGS.
    erosions: int = 2
    dilations: int = 3

    def validate(self):
        super().validate()
        for key in ("erosions", "dilations"):
            self.require(key, is_int(getattr(self, key)) and getattr(self, key) >= 0, "an integer >= 0")

    def maps(self, x, model=None):
        return self.differentiable_maps(x.detach(), model)

    def differentiable_maps(self, x, model=None, keep_grad: str = "constant", **_):
        m = self._saliency(x, model)  # detached
        d = saliency_mask(m, self.erosions, self.dilations)
        return {"g": self._g(x, keep_grad) * d, MASK: d, "saliency": m}
