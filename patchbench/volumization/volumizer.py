"""The volumizer V of BMVC 2023 Eq. 3 as a module, :class:`Volumizer`.

The ranking is piecewise constant in the pixels, so the
forward pass treats the order as a constant and the gradient w.r.t. the pixels flows through
the gather of patches (exact almost everywhere: wherever the order does not change under an
infinitesimal perturbation) — what a white-box attacker differentiates.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from patchbench.errors import PatchbenchError, check, is_number
from patchbench.volumization.metrics import check_bins, check_chunk, get_metric
from patchbench.volumization.split import PADS, as_patch_size, merge_patches, shape_of, split_patches
from patchbench.volumization.ranking import ORDERS, REFERENCES, rank, scores


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
        self.patch = as_patch_size(patch)
        get_metric(metric)
        if order not in ORDERS:
            raise PatchbenchError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
        check(pad in PADS, f"pad must be one of {', '.join(PADS)}, got {pad!r}")
        check(is_number(eps) and eps >= 0, f"eps must be a number >= 0, got {eps!r}")
        check_chunk(chunk)
        self.metric, self.order, self.bins, self.pad, self.eps, self.chunk = metric, order, check_bins(bins), pad, eps, chunk
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
              f"volume (B, C, N, ph, pw) and order (B, N) do not match: {shape_of(volume)}, {shape_of(order)}")
        inverse = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        patches = torch.take_along_dim(volume.transpose(1, 2), inverse[:, :, None, None, None], dim=1)
        return merge_patches(patches, grid, image_size)
