"""Digital Watermarking defense (Hayes 2018, "On Visible Adversarial Perturbations & Digital
Watermarking", CVPR-W), the DW baseline of ICAART 2022 (Sec. 2.2, Fig. 9).

Hayes' pipeline, as read here (each step a parameter; the paper's exact constants are not
reproduced, so the defaults are choices, stated below):

1. saliency: a gradient saliency map of the classifier marks the suspected patch.
   ``saliency="logit"`` (default): Simonyan et al. 2013's map, |∂ logit_top / ∂x| of the model's
   top class, max over channels. ``saliency="topk_ce"``: ICAART's Eq. 6 map
   (:func:`patchbench.defenses.saliency.saliency_map` with ``top_k`` classes). The logit is the
   default because a log-softmax gradient vanishes on confidently classified images — and a
   successful patch makes the model confident;
2. binarize per image: ``rule="std"`` marks pixels with M > mean(M) + ``threshold``·std(M)
   (default threshold 2; a region of uniform saliency V over a fraction f of a zero background
   passes while f + 2·sqrt(f(1-f)) < 1, i.e. f < 20 %); ``rule="quantile"`` marks M > the
   ``threshold``-quantile of M (linear interpolation, as numpy/torch.quantile);
3. clean the mask: ``erosions`` binary erosions then ``dilations`` binary dilations with a 3×3 square,
   done by ``max_pool2d``; pixels outside the image count as 0 for both (scipy.ndimage's
   default ``border_value=0``). Erosion drops isolated salient pixels, dilation then covers
   the patch's rim (defaults 1 and 2);
4. inpaint the masked pixels: harmonic (Laplace) inpainting, the discrete solution of Δu = 0 on
   the mask with the unmasked pixels as boundary values — every masked pixel becomes the mean of
   its 4 in-image neighbours (a natural Neumann condition at the image border). Masked pixels
   start at the mean of the image's unmasked pixels (per channel; 0.5 when all are masked) and
   red-black successive over-relaxation sweeps update them: at most ``inpaint_iter`` (300),
   factor ``omega`` ("auto", default: Young's optimal factor for each image's hole, ≈ 1.69 for
   16×16; or a number, 1 = Gauss-Seidel), and an image stops once a sweep changes none of its
   pixels by ``inpaint_tol`` (1e-6) or more: on the bench's 16×16 holes 48 sweeps (ω 1.9: 128) instead
   of 300, within 2.1e-6 of the exact solution (300 sweeps at ω 1.9: 6e-7; float32 round-off
   4e-7), 1/2000 of a grey level. ``inpaint_tol`` 0 runs all ``inpaint_iter`` sweeps.
   Hayes used OpenCV's inpainting (``cv2.inpaint``); OpenCV is not a dependency of patchbench,
   and the Laplace fill is batched on the device and has a reference solution (tests:
   scipy.sparse.linalg.spsolve).

``maps`` does all the work (it needs the model for step 1; no model raises PatchbenchError) and
returns ``{"out", "mask"}``; the base class's ``apply`` returns ``maps["out"]`` (no λ). Batch-invariant: the
saliency of an image only depends on that image, every other step is per image.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from patchbench.defenses.base import MASK, OUT, Defense, register_defense
from patchbench.defenses.morphology import dilate, erode
from patchbench.defenses.saliency import saliency_map
from patchbench.errors import check, is_int, is_number
from patchbench.util import eval_mode


def logit_saliency(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """|∂ logit_c / ∂x| for the model's top class c, max over channels (N×1×H×W, detached)."""
    with eval_mode(model), torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        logits = model(xi)
        (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), xi)
    return grad.abs().amax(1, keepdim=True)


def binarize(m: torch.Tensor, rule: str = "std", threshold: float = 2.0) -> torch.Tensor:
    """Per-image binary mask of a saliency map N×1×H×W (bool)."""
    flat = m.flatten(1)
    if rule == "std":
        mean = flat.mean(1, keepdim=True)
        dev = flat - mean  # two passes, as numpy's std (torch.std took 5× longer on a 64×64 batch)
        t = mean.view(-1) + threshold * dev.mul_(dev).mean(1).sqrt_()
    else:  # quantile, linear interpolation between order statistics
        s = flat.sort(1).values
        pos = threshold * (s.shape[1] - 1)
        lo = int(pos)
        hi = min(lo + 1, s.shape[1] - 1)
        t = s[:, lo] + (pos - lo) * (s[:, hi] - s[:, lo])
    return m > t.view(-1, 1, 1, 1)


def sor_omega(extent_h: torch.Tensor, extent_w: torch.Tensor) -> torch.Tensor:
    """Young's optimal SOR factor ω = 2 / (1 + sqrt(1 - ρ²)) (Young 1954, for consistently ordered
    matrices, which the red-black 5-point Laplacian is), with ρ = (cos(π/(a+1)) + cos(π/(b+1))) / 2
    the Jacobi spectral radius of the 5-point Laplacian on an a×b grid with Dirichlet boundary.
    Per image, from the extents of its hole."""
    rho = (torch.cos(torch.pi / (extent_h + 1)) + torch.cos(torch.pi / (extent_w + 1))) / 2
    return 2 / (1 + torch.sqrt(1 - rho**2))


def harmonic_inpaint(x: torch.Tensor, mask: torch.Tensor, iterations: int = 300, omega: float | str = 1.9,
                     tol: float = 0.0, check_every: int = 8) -> torch.Tensor:
    """Fill the pixels where ``mask`` (N×1×H×W bool) is True with the solution of the discrete
    Laplace equation Δu = 0 (4-neighbour mean, neighbours inside the image only), by red-black SOR.
    Unmasked pixels are never changed. Every connected masked region borders an unmasked pixel
    (the grid is connected), so the solution is unique — unless the whole image is masked, which
    then keeps its initial value 0.5.

    ``iterations`` sweeps at most; ``omega`` a number, or "auto": per image :func:`sor_omega` of
    its hole's bounding box, each extent doubled where the hole touches the image border (the
    Neumann side mirrors the hole); a 16×16 hole takes ω ≈ 1.69, which reaches float32 round-off
    in about 60 sweeps where 1.9 needs about 150. ``tol`` > 0: every ``check_every`` sweeps, an
    image whose largest change in the last sweep is below ``tol`` stops (its pixels are no longer
    updated: bit for bit what it gives alone, whatever its batch); the loop ends when all stopped.

    Per image, only the bounding box of its masked pixels grown by one pixel is iterated: a masked
    pixel's neighbours all lie inside it, so the result is the same as iterating the whole image.
    The boxes of the images that have a mask are cut out at one common size (the largest box,
    moved inward where it would leave the image) and stacked, so that masks at different places (a
    patch placed at random per image) cost the patch's area per image, not the area of the union
    of all patches. Inside the stack each half-sweep updates a zero-padded buffer in place:
    u ← u·(1 − ω·s) + (ω·s / degree)·Σ neighbours, s = [pixel of this colour and masked] — the SOR
    step u + ω(Σ/deg − u) for a selected pixel, u·1 + 0·Σ = u for any other. Colours and degrees
    are those of the pixel's place in the image.
    """
    n, c, h, w = x.shape
    m = mask.expand(n, c, h, w)
    keep = (~m).to(x.dtype)
    count = keep.sum((2, 3), keepdim=True)
    mean = torch.where(count > 0, (x * keep).sum((2, 3), keepdim=True) / count.clamp(min=1), torch.full_like(count, 0.5))
    u_full = torch.where(m, mean.expand_as(x), x)
    m1 = mask.expand(n, 1, h, w)[:, 0]
    rows, cols = m1.any(2), m1.any(1)  # n×h, n×w: rows / columns of each image with a masked pixel
    sel = rows.any(1).nonzero().flatten()  # the images that have a mask
    if iterations == 0 or len(sel) == 0:
        return u_full
    rows, cols = rows[sel], cols[sel]

    def span(any_: torch.Tensor, size: int):
        """Per image: start of the common-size window and that size, around [first - 1, last + 2);
        and the hole's extent, doubled where it touches the border."""
        ar = torch.arange(size, device=x.device)
        first = torch.where(any_, ar, size).amin(1)
        last = torch.where(any_, ar, -1).amax(1)
        lo, hi = (first - 1).clamp(min=0), (last + 2).clamp(max=size)
        extent = int((hi - lo).max())
        hole = (last - first + 1) * (1 + (first == 0).long() + (last == size - 1).long())
        return torch.minimum(lo, torch.full_like(lo, size - extent)), extent, hole.to(x.dtype)

    top, hh, hole_h = span(rows, h)
    left, ww, hole_w = span(cols, w)
    gi = top.view(-1, 1, 1) + torch.arange(hh, device=x.device).view(1, hh, 1)  # image row of each window pixel
    gj = left.view(-1, 1, 1) + torch.arange(ww, device=x.device).view(1, 1, ww)
    flat = (gi * w + gj).view(len(sel), 1, hh * ww)
    k = len(sel)

    def cut(t: torch.Tensor) -> torch.Tensor:  # the windows of t (k×C'×H×W) as k×C'×hh×ww
        return t.flatten(2).gather(2, flat.expand(k, t.shape[1], hh * ww)).view(k, t.shape[1], hh, ww)

    u_sel = u_full[sel]
    # the windows in a zero-padded buffer: outside the image counts 0 (and a window's own rim,
    # inside the image, holds fixed unmasked values that only serve as neighbours)
    buf = torch.zeros(k, c, hh + 2, ww + 2, dtype=x.dtype, device=x.device)
    inner = buf[..., 1:-1, 1:-1]
    inner.copy_(cut(u_sel))
    degree = ((gi > 0).to(x.dtype) + (gi < h - 1).to(x.dtype) + (gj > 0).to(x.dtype) + (gj < w - 1).to(x.dtype)).unsqueeze(1)
    red = ((gi + gj) % 2 == 0).unsqueeze(1)  # the colouring of the whole image
    mb = cut(m1[sel].unsqueeze(1))
    om = sor_omega(hole_h, hole_w).view(k, 1, 1, 1) if omega == "auto" else torch.full((k, 1, 1, 1), float(omega), dtype=x.dtype, device=x.device)
    steps = [(mb & red).to(x.dtype) * om, (mb & ~red).to(x.dtype) * om]
    halves = [(1 - s, s / degree) for s in steps]  # (factor of u, factor of Σ neighbours)
    nsum = torch.empty_like(inner)
    up, down, west, east = buf[..., :-2, 1:-1], buf[..., 2:, 1:-1], buf[..., 1:-1, :-2], buf[..., 1:-1, 2:]
    before = inner.clone() if tol > 0 else None
    for sweep in range(iterations):  # small tensors: each op's cost is mostly its call, so few ops
        check = tol > 0 and (sweep + 1) % check_every == 0
        if check:
            before.copy_(inner)
        for factor, gain in halves:
            torch.add(up, down, out=nsum).add_(west).add_(east)
            inner.mul_(factor).addcmul_(nsum, gain)
        if check:
            moving = (inner - before).abs().amax((1, 2, 3), keepdim=True) >= tol
            if not bool(moving.any()):
                break
            if not bool(moving.all()):  # freeze the images that stopped: u·1 + 0·Σ from now on
                halves = [(torch.where(moving, f, 1.0), torch.where(moving, g, 0.0)) for f, g in halves]
    u_sel = u_sel.flatten(2).scatter_(2, flat.expand(k, c, hh * ww), inner.reshape(k, c, hh * ww)).view(k, c, h, w)
    return u_full.index_copy_(0, sel, u_sel)


@register_defense
@dataclasses.dataclass
class DigitalWatermarking(Defense):
    """Hayes 2018's saliency-mask + inpainting defense ("DW"); see the module docstring."""

    name: ClassVar[str] = "dw"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "bpda"  # hard mask + inpainting: identity backward

    saliency: str = "logit"  # logit (Simonyan 2013) | topk_ce (ICAART Eq. 6)
    top_k: int = 5  # classes of the topk_ce saliency
    rule: str = "std"  # std: mean + threshold·std | quantile: threshold-quantile
    threshold: float = 2.0
    erosions: int = 1
    dilations: int = 2
    inpaint_iter: int = 300  # sweeps at most
    omega: float | str = "auto"  # auto: Young's optimal factor per image | a number in (0, 2)
    inpaint_tol: float = 1e-6  # an image stops when a sweep changes none of its pixels by this much; 0: all sweeps

    def validate(self):
        self.require_choice("saliency", ("logit", "topk_ce"))
        self.require("top_k", is_int(self.top_k) and self.top_k >= 1, "an integer >= 1")
        self.require_choice("rule", ("std", "quantile"))
        self.require("threshold", is_number(self.threshold) and (self.rule != "quantile" or 0 <= self.threshold <= 1),
                     "a number (in [0, 1] for rule quantile)")
        for field in ("erosions", "dilations", "inpaint_iter"):
            self.require(field, is_int(getattr(self, field)) and getattr(self, field) >= 0, "an integer >= 0")
        self.require("omega", self.omega == "auto" or (is_number(self.omega) and 0 < self.omega < 2),
                     "auto or in (0, 2) for SOR to converge")
        self.require("inpaint_tol", is_number(self.inpaint_tol) and self.inpaint_tol >= 0, "a number >= 0")

    def mask(self, x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        """Steps 1-3: the cleaned binary mask, N×1×H×W bool."""
        m = logit_saliency(model, x) if self.saliency == "logit" else saliency_map(model, x, self.top_k)
        m = binarize(m, self.rule, float(self.threshold))
        return dilate(erode(m, self.erosions, border="zero"), self.dilations)

    def maps(self, x, model=None):
        check(model is not None, "dw needs the classifier: its saliency map marks the region to inpaint")
        mask = self.mask(x, model)
        with torch.no_grad():
            omega = self.omega if self.omega == "auto" else float(self.omega)
            out = harmonic_inpaint(x.detach(), mask, self.inpaint_iter, omega, float(self.inpaint_tol)).clamp(0, 1)
        return {OUT: out, MASK: mask}
