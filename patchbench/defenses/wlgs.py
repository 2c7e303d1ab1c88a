"""Weighted LGS (ICAART 2022 Eq. 11-12): LGS's g(x) weighted by the normalized saliency map.

Reuses LGS's g(x), its per-image min-max normalization and apply (Eq. 5,
:mod:`patchbench.defenses.lgs`); the saliency map M(x) is
:func:`patchbench.defenses.saliency.saliency_map` (Eq. 6).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from patchbench.defenses.base import register_defense
from patchbench.defenses.lgs import KEEP_GRADS, SaliencyLGS, minmax_per_image


@register_defense
@dataclasses.dataclass
class WLGS(SaliencyLGS):
    """Weighted LGS, T(x) = x ⊙ clip(1 - λ·W(x) ⊙ g(x), 0, 1) (ICAART Eq. 11-12).

    Eq. 12 is printed with M(x), but Eq. 11 defines the per-image min-max normalized saliency
    W(x) in [0, 1] precisely to weight g(x) ("we take the normalized map W as the weight matrix"),
    and the caption of Fig. 5 clips it to (0, 1): W is used here.
    """

    name: ClassVar[str] = "wlgs"
    # gradient: W(x) = minmax(M(x)) is differentiable only through second-order autograd.
    # saliency_grad="second-order" builds M with create_graph=True, so dW/dx flows (double
    # backward through the classifier; for a ReLU/max-pool net the derivative within the current
    # linear piece); "constant" detaches W (BPDA with the constant).
    grad_options: ClassVar[dict[str, tuple[str, ...]]] = {
        "keep_grad": KEEP_GRADS, "saliency_grad": ("second-order", "constant")}

    def maps(self, x, model=None):
        return self.differentiable_maps(x.detach(), model, saliency_grad="constant")

    def differentiable_maps(self, x, model=None, keep_grad: str = "constant",
                            saliency_grad: str = "second-order", **_):
        m = self._saliency(x, model, create_graph=saliency_grad == "second-order" and x.requires_grad)
        w = minmax_per_image(m)
        return {"g": self._g(x, keep_grad) * w, "weight": w, "saliency": m}
