"""Local Gradients Smoothing (Naseer et al., WACV 2019), as used by ICAART 2022 (Eq. 4-5).

Follows the reference notebook the ICAART paper cites (metallurk/local_gradients_smoothing,
``lgs.ipynb``, cell 4: ``get_gx``, ``get_gradient``, ``apply_gradient``), line by line:

1. Eq. 4, ``get_gx``: ``sobelx = [[1,0,-1], [2,0,-2], [1,0,-1]]``, ``sobely = sobelx.T``,
   ``G_x = F.conv2d(..., padding=1)``, ``G = torch.sqrt(G_x**2 + G_y**2)``: the Sobel magnitude
   per channel with zero padding 1;
2. ``gx = (G-G.min())/(G.max()-G.min())``: min-max normalization over all channels together;
3. ``get_gradient``: ``stride = block_size - overlap``; per axis ``left = v % stride``,
   ``need = overlap if left <= overlap else block_size``, ``pad = need - left`` split
   ``int(pad / 2)`` before and the rest after; ``tensor = F.pad(tensor, ...)`` (zeros) so the
   windows tile the image exactly (:func:`window_padding`);
4. ``mask = (patches.sum([1,-2,-1]) / prod(C, block, block)) >= threshold``: a window is kept
   when the mean normalized gradient over the window and all channels (padding included) is
   >= ``threshold``;
5. ``def fold(x): x = x * mask; ... F.fold(...)`` and ``r = fold(patches) / fold(ox)`` with
   ``ox = torch.ones_like(patches)``: *both* the numerator and the denominator are masked, so
   g(x) is the average of gx over the *kept* windows covering a pixel — gx itself wherever at
   least one covering window is kept — and a pixel covered by no kept window is 0/0, which
   ``r[r != r] = 0`` sets to 0. This is ``window_average="kept"``, the default.
   ``window_average="all"`` (an earlier reading, kept as an option) divides by all covering
   windows instead, so pixels near dropped windows are attenuated;
6. Eq. 5, ``apply_gradient``: ``t = 1 - grad * smooth_factor``, ``torch.mul(img, torch.clip(t, 0, 1))``:
   T(x) = x ⊙ clip(1 - λ·g(x), 0, 1).

Deliberate differences from the notebook (parameters, documented):

* normalization is per image. The notebook takes ``G.min()``/``G.max()`` over the whole batch,
  so an image's output depends on its batch mates; here every image is processed as if alone
  (batch invariance; identical to the notebook for a batch of one).
* ``space``: ``"pixel"`` applies Eq. 4-5 to x in [0, 1]; ``"normalized"`` applies them to the
  mean/std-normalized tensor the classifier sees (the notebook's choice: it calls ``lgs`` on
  ``Normalize``d tensors; used by the ICAART presets). Then T pulls pixels toward the dataset
  mean instead of black: x' = μ + (x - μ) ⊙ clip(1 - λ g(x_n), 0, 1), g computed from x_n.
* the notebook names the axes ``B, C, W, H`` and its padding list is built (rows, cols) but
  ``F.pad`` reads it (cols, rows): identical for square images; here each axis gets its own
  padding, which is what the notebook means for non-square ones.

SLGS and WLGS (:mod:`~patchbench.defenses.slgs`, :mod:`~patchbench.defenses.wlgs`) reuse this
module's g(x) and Eq. 5 (:class:`SaliencyLGS`) on a saliency-weighted g(x).

Implementation: the window test is an ``avg_pool2d`` of the channel-mean gradient and the
per-pixel count of kept windows a ``conv_transpose2d`` with a ones kernel — no unfold copies
(window² memory), no Python loops.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F

from patchbench.defenses.base import Defense, register_defense
from patchbench.defenses.saliency import saliency_map
from patchbench.errors import check, is_int, is_number


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 4: sqrt((∂x/∂a)² + (∂x/∂b)²) per channel, Sobel kernels, zero padding 1.

    The notebook's ``F.conv2d(..., sobelx, padding=1)`` with ``sobelx = [[1,0,-1],[2,0,-2],[1,0,-1]]``
    (and ``sobely = sobelx.T``) is computed separably: a difference of the zero-padded image two
    columns (rows) apart, then the [1, 2, 1] smoothing across it — the same nine products, summed
    in another order (equal up to float rounding), as slices of one padded tensor. On the CPU a
    1-input-channel conv2d is the slowest path of oneDNN: this is ~8x faster there.

    The gradient of √ is infinite at 0 (autograd would give NaN in flat regions, e.g.
    Fashion-MNIST's black background); it is taken as 0 there, the exact derivative elsewhere.
    The forward value is the plain square root.
    """
    p = F.pad(x, (1, 1, 1, 1))
    if not (torch.is_grad_enabled() and x.requires_grad):
        # no graph to keep: two outputs accumulated in place from slices of p (every fresh full-size
        # tensor costs its page faults on the CPU, more than the arithmetic)
        gx = torch.sub(p[..., :-2, :-2], p[..., :-2, 2:])  # sobelx row 0: [1, 0, -1]
        gx.add_(p[..., 2:, :-2]).sub_(p[..., 2:, 2:])  # row 2: [1, 0, -1]
        gx.add_(p[..., 1:-1, :-2], alpha=2).sub_(p[..., 1:-1, 2:], alpha=2)  # row 1: [2, 0, -2]
        gy = torch.sub(p[..., :-2, :-2], p[..., 2:, :-2])  # sobely = sobelx.T, column by column
        gy.add_(p[..., :-2, 2:]).sub_(p[..., 2:, 2:])
        gy.add_(p[..., :-2, 1:-1], alpha=2).sub_(p[..., 2:, 1:-1], alpha=2)
        return gx.mul_(gx).addcmul_(gy, gy).sqrt_()
    dh = p[..., :, :-2] - p[..., :, 2:]  # column j-1 minus column j+1: the [1, 0, -1] of sobelx
    dv = p[..., :-2, :] - p[..., 2:, :]  # row i-1 minus row i+1: the [1, 0, -1] of sobely
    gx = dh[..., :-2, :] + 2 * dh[..., 1:-1, :] + dh[..., 2:, :]
    gy = dv[..., :, :-2] + 2 * dv[..., :, 1:-1] + dv[..., :, 2:]
    sq = gx**2 + gy**2
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def minmax_per_image(t: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """(t - min) / (max - min) over each image (all channels); a flat image maps to 0. ``in_place``:
    overwrite ``t`` (when it needs no gradient)."""
    flat = t.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)  # (two passes: aminmax along a dim is ~10x slower on the CPU)
    lo, rng = lo.view(-1, 1, 1, 1), (hi - lo).view(-1, 1, 1, 1)
    # a flat image has t - lo == 0 everywhere: dividing by 1 instead of 0 maps it to 0
    rng = torch.where(rng > 0, rng, torch.ones_like(rng))
    if in_place and not t.requires_grad:
        return t.sub_(lo).div_(rng)
    return (t - lo) / rng


def window_padding(length: int, window: int, overlap: int) -> tuple[int, int]:
    """Zero padding (before, after) so windows of stride window-overlap tile ``length`` exactly
    (the notebook's rule: pad to overlap if the remainder is <= overlap, else to a full window)."""
    stride = window - overlap
    left = length % stride
    need = overlap if left <= overlap else window
    pad = need - left
    if length + pad < window:  # an image smaller than one window (the notebook fails there): one
        pad = window - length  # zero-padded window covers it, centred like the notebook's padding
    return pad // 2, pad - pad // 2


def window_cover(length: int, window: int, stride: int, before: int, dtype, device) -> torch.Tensor:
    """``length`` × n_windows 0/1 matrix: C[r, i] = 1 when window i (starting at i·stride in the
    padded axis) covers pixel r of the unpadded axis (r + ``before`` in the padded one)."""
    n = (length + sum(window_padding(length, window, window - stride)) - window) // stride + 1
    r = torch.arange(length, device=device).view(-1, 1) + before
    start = torch.arange(n, device=device).view(1, -1) * stride
    return ((r >= start) & (r < start + window)).to(dtype)


KEEP_GRADS = ("constant", "straight-through")


def gradient_map(x: torch.Tensor, window: int = 15, overlap: int = 5, threshold: float = 0.2,
                 window_average: str = "kept", keep_grad: str = "constant") -> torch.Tensor:
    """g(x) of LGS for a batch (N×C×H×W), values in [0, 1], same shape as x.

    Gradient (adaptive attacks): the Sobel magnitude and the min-max normalization are
    differentiable and stay in the graph. The window keep-test is a step function of the
    window average, so the factor F (kept windows covering a pixel) is piecewise constant: its
    exact gradient is 0 a.e. ``keep_grad="constant"`` uses it as a constant (which *is* the exact
    a.e. gradient); ``"straight-through"`` sets d keep / d avg := 1 (keep + (a − a.detach()), a
    surrogate that also rewards pushing a window under the threshold; forward value unchanged).
    """
    check(keep_grad in KEEP_GRADS, f"keep_grad must be one of {', '.join(KEEP_GRADS)}, got {keep_grad!r}")
    n, c, h, w = x.shape
    stride = window - overlap
    gx = minmax_per_image(sobel_magnitude(x), in_place=True)  # the magnitude is a fresh tensor
    pt, pb = window_padding(h, window, overlap)
    pl, pr = window_padding(w, window, overlap)
    padded_mean = F.pad(gx.mean(1, keepdim=True), (pl, pr, pt, pb))
    # mean over window and channels (padding counts, as in the notebook) >= threshold
    avg = F.avg_pool2d(padded_mean, window, stride)
    keep = (avg >= threshold).to(x.dtype)  # step function: no autograd edge
    if keep_grad == "straight-through":
        keep = keep + (avg - avg.detach())
    # the notebook's fold(mask) (kept windows covering each pixel) as C_h · keep · C_wᵀ with 0/1
    # cover matrices: the same integer counts as F.fold / conv_transpose2d with a ones kernel,
    # by two small matrix products instead of a 1-channel transposed convolution
    ch = window_cover(h, window, stride, pt, x.dtype, x.device)
    cw = window_cover(w, window, stride, pl, x.dtype, x.device)
    kept = ch @ keep @ cw.T
    if window_average == "kept":
        factor = (kept > 0).to(x.dtype)
    else:
        total = ch.sum(1).view(-1, 1) * cw.sum(1).view(1, -1)  # every window covering the pixel
        factor = kept / total
    return gx.mul_(factor) if not gx.requires_grad else gx * factor


@register_defense
@dataclasses.dataclass
class LGS(Defense):
    """Local Gradients Smoothing, T(x) = x ⊙ clip(1 - λ·g(x), 0, 1) (ICAART Eq. 5).

    Paper/notebook parameters at 400 px: window 15, overlap 5, threshold 0.2, space normalized.
    """

    name: ClassVar[str] = "lgs"
    saved_maps: ClassVar[tuple[str, ...]] = ("g",)  # the normalized gradient map g(x), Eq. 1-2
    gradient: ClassVar[str] = "partial"  # Sobel + min-max exact; the window keep-test per keep_grad
    grad_options: ClassVar[dict[str, tuple[str, ...]]] = {"keep_grad": KEEP_GRADS}

    threshold: float = 0.2
    window: int = 15
    overlap: int = 5
    space: str = "pixel"  # pixel | normalized
    window_average: str = "kept"  # kept (the notebook's fold(x * mask) / fold(ones * mask)) | all
    mean: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"param": False})
    std: tuple[float, ...] | None = dataclasses.field(default=None, metadata={"param": False})

    def validate(self):
        self.require("window", is_int(self.window) and self.window >= 2, "an integer >= 2")
        self.require("overlap", is_int(self.overlap) and 0 <= self.overlap < self.window, "an integer in 0..window-1")
        self.require("threshold", is_number(self.threshold) and 0 <= self.threshold <= 1, "in [0, 1]")
        self.require_choice("space", ("pixel", "normalized"))
        self.require_choice("window_average", ("all", "kept"))

    @classmethod
    def from_params(cls, params, model=None):
        params = dict(params)
        if params.get("space") == "normalized" and model is not None:
            params.setdefault("mean", tuple(model.mean.flatten().tolist()))
            params.setdefault("std", tuple(model.std.flatten().tolist()))
        defense = cls(**params)
        defense._check_stats()
        return defense

    def _check_stats(self) -> None:
        """Space "normalized" needs the model's mean/std (given by ``from_params``, not a parameter)."""
        check(self.space == "pixel" or (self.mean is not None and self.std is not None),
              f"{self.name} space 'normalized' needs the model's mean/std (give a --preset)")

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_stats()
        c = x.shape[1]
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        check(mean.shape[1] in (1, c), f"{self.name} normalization has {mean.shape[1]} channels, images have {c}")
        return mean, std

    def _g(self, x: torch.Tensor, keep_grad: str = "constant") -> torch.Tensor:
        if self.space == "normalized":
            mean, std = self._stats(x)
            x = (x - mean) / std
        return gradient_map(x, self.window, self.overlap, float(self.threshold), self.window_average, keep_grad)

    def maps(self, x, model=None):
        return {"g": self._g(x)}

    def differentiable_maps(self, x, model=None, keep_grad: str = "constant", **_):
        return {"g": self._g(x, keep_grad)}

    def apply(self, x, maps, lam):
        factor = (maps["g"] * -lam).add_(1).clamp_(0, 1)  # 1 - λ·g, clipped (Eq. 5), in place
        if self.space == "normalized":
            mean, _ = self._stats(x)
            # (x_n ⊙ f)·σ + μ = μ + (x - μ) ⊙ f : stays in [0, 1] for f in [0, 1]
            return mean + (x - mean) * factor
        if factor.shape == x.shape and not (torch.is_grad_enabled() and (x.requires_grad or factor.requires_grad)):
            return factor.mul_(x)  # x ⊙ factor into the fresh factor: no second full-size tensor
        return x * factor


@dataclasses.dataclass
class SaliencyLGS(LGS):
    """LGS on a g(x) re-weighted by the classifier's saliency (ICAART 2022 Sec. 3): the common
    part of :class:`~patchbench.defenses.slgs.SLGS` and :class:`~patchbench.defenses.wlgs.WLGS`,
    which reuse LGS's apply (Eq. 5)."""

    top_k: int = 5  # classes in the saliency loss S (ICAART Sec. 3: "top 5 classes")

    def validate(self):
        super().validate()
        self.require("top_k", is_int(self.top_k) and self.top_k >= 1, "an integer >= 1")

    def _saliency(self, x: torch.Tensor, model, create_graph: bool = False) -> torch.Tensor:
        check(model is not None, f"{self.name} needs the classifier (its saliency map); give a --preset")
        return saliency_map(model, x, self.top_k, create_graph=create_graph)
