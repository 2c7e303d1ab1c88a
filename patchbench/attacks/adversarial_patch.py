"""Adversarial Patch (Brown et al., 2017), as ICAART 2022 uses it (Eq. 2, Sec. 4.1).

Eq. 2: p̂ = argmax_p E_{x~X, t~T, l~L} [log Pr(ŷ | A(p, x, l, t))] — a targeted, universal patch
trained under an expectation over transformations (EoT): every training image gets its own random
location l, rotation and scale t. With a placement mask (``region``) the location is drawn so that
every pixel the rotated, scaled patch may touch (:func:`~patchbench.attacks.placement.eot_footprint`)
lies inside the mask. The ICAART presets use a square 90 px patch (5 % of 400 px)
and test it at the fixed top-right placement like LaVAN (Sec. 4.1 Testing).

EoT is batched: the patch and its mask are drawn on an image-sized canvas, and one
``affine_grid``/``grid_sample`` per batch rotates, scales and moves them per image (bilinear;
the mask is resampled the same way, so edges blend). With rotation 0 and scale 1 the training
images equal the exact integer-offset paste used at test time.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F

from patchbench.attacks.base import register_attack
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Placement
from patchbench.attacks.placement import eot_footprint, region_mask
from patchbench.errors import check


def eot_paste(x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor, angle_deg: torch.Tensor,
              scale: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """x' = (1 - m_t) ⊙ x + m_t ⊙ δ_t with δ, m rotated by ``angle_deg``, scaled by ``scale`` about
    the patch centre, and the (unscaled) patch box's top-left corner at (top, left); per image."""
    n, c, h, w = x.shape
    s = delta.shape[-1]
    deltas = delta if delta.ndim == 4 else delta[None]  # k patches; images are restart-major
    k = deltas.shape[0]
    # canvas with the patch in the top-left corner; the affine map moves it
    canvas = torch.zeros(k, c + 1, h, w, device=x.device, dtype=x.dtype)
    canvas[:, :c, :s, :s] = deltas
    canvas[:, c:, :s, :s] = mask
    # In pixel coordinates an output pixel p samples the canvas at B (p - c_out) + c_in with
    # B = R(-θ) / scale; in affine_grid's normalized coordinates (align_corners=True,
    # u = D p - 1, D = diag(2/(w-1), 2/(h-1))) that is u_in = A u_out + t, A = D B D⁻¹.
    theta = torch.deg2rad(angle_deg.to(x))
    cos, sin = torch.cos(theta) / scale.to(x), torch.sin(theta) / scale.to(x)
    sx, sy = 2 / (w - 1), 2 / (h - 1)
    a = torch.stack([torch.stack([cos, sin * sx / sy], 1),
                     torch.stack([-sin * sy / sx, cos], 1)], 1)  # N×2×2
    centre = (s - 1) / 2
    c_out = torch.stack([(left.to(x) + centre) * sx - 1, (top.to(x) + centre) * sy - 1], 1)
    c_in = torch.tensor([centre * sx - 1, centre * sy - 1], device=x.device, dtype=x.dtype)
    t = c_in - (a @ c_out.unsqueeze(2)).squeeze(2)
    grid = F.affine_grid(torch.cat([a, t.unsqueeze(2)], 2), (n, c + 1, h, w), align_corners=True)
    canvas = canvas.expand(n, -1, -1, -1) if k == 1 else canvas.repeat_interleave(n // k, 0)
    warped = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    d, m = warped[:, :c], warped[:, c:]
    return (1 - m) * x + m * d


@register_attack
class AdversarialPatch(LaVAN):
    r"""Adversarial Patch in the paper 'Adversarial Patch' [https://arxiv.org/abs/1712.09665]
    (Brown, Mané, Roy, Abadi & Gilmer, 2017), as ICAART 2022 Eq. 2 writes it: a targeted universal
    patch trained with expectation over transformations.

    Distance Measure : L0 (a square patch)

    Targeted universal patch with EoT (Brown et al. 2017; ICAART Eq. 2).

    Differences from :class:`LaVAN`: the loss is −log Pr(target) (Eq. 2) instead of the logit
    difference of Eq. 3, and each training image draws a random location (``random_placement``),
    a rotation in ±``rotation`` degrees and a scale in ``scale_range`` (uniform). SGD with
    momentum on δ ∈ [0, 1] like LaVAN; the optimizer settings come from the preset.

    Arguments:
        model, size, target, placement, image_size: as :class:`~patchbench.attacks.lavan.LaVAN`'s.
        rotation (float): max |angle| in degrees of each training image's random rotation. (Default: 0.0)
        scale_range (iterable of float): (low, high) of the random scale of the side. (Default: (1.0, 1.0))
        **kw: :class:`LaVAN`'s optimizer settings (``steps``, ``lr``, ``random_placement`` ...).

    Shape: ``fit``: batches of (:math:`(B, C, H, W)`, :math:`(B)`) -> a Patch of :math:`(C, s, s)` pixels; ``forward``: :math:`(N, C, H, W)` kept.

    Examples::
        >>> attack = AdversarialPatch(model, 8, 0, Placement("top-right", 2), 64, rotation=22.5, scale_range=(0.9, 1.1),
        ...                            random_placement=True, steps=20)
        >>> patch = attack.fit(itertools.repeat((images, labels)), channels=images.shape[1])
        >>> adv_images = attack(images, labels)  # the patch pasted at its placement
    """

    name = "adversarial_patch"

    def __init__(self, model, size: int, target: int, placement: Placement, image_size: int, *,
                 rotation: float = 0.0, scale_range: Iterable[float] = (1.0, 1.0), **kw):
        super().__init__(model, size, target, placement, image_size, **kw)
        self.rotation = float(rotation)
        self.scale_range = tuple(float(v) for v in scale_range)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return {**super().config_kwargs(cfg), "rotation": cfg.rotation, "scale_range": cfg.scale_range}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative of Eq. 2's objective: −E[log Pr(ŷ_target | x')]; untargeted (``target=None``,
        BMVC 2023 Sec. 3): E[log Pr(y | x')], pushing the true class down."""
        logp = F.log_softmax(logits, 1)
        if self.target is None:
            return logp.gather(1, labels[:, None]).mean()
        return -logp[:, self.target].mean()

    def training_images(self, x, delta, mask, gen):
        lo, hi = self.scale_range
        if self.rotation == 0 and lo == hi == 1.0:
            return super().training_images(x, delta, mask, gen)
        k = delta.shape[0]  # restarts: each patch on every image of the batch, restart-major
        x = x.repeat(k, 1, 1, 1) if k > 1 else x
        n = len(x)
        angle = (torch.rand(n, generator=gen) * 2 - 1) * self.rotation
        scale = lo + (hi - lo) * torch.rand(n, generator=gen)
        if (self.random_placement or not self.placement.fixed) and self.placement.region is not None:
            # inside the placement mask: the box of every pixel the transformed patch may touch lies in it
            b = eot_footprint(self.size, self.rotation, hi)
            top, left = self.placement.sample(n, self.image_size, b, gen, "cpu")
            top, left = top.float() + (b - self.size) / 2, left.float() + (b - self.size) / 2
        elif self.random_placement or not self.placement.fixed:
            # keep the scaled, rotated patch inside the image: its bounding half-width
            half = (self.size / 2) * scale * (angle.abs().deg2rad().cos() + angle.abs().deg2rad().sin())
            margin = (half - self.size / 2).clamp(min=0)
            span = (self.image_size - self.size - 2 * margin).clamp(min=0)
            top = margin + torch.rand(n, generator=gen) * span
            left = margin + torch.rand(n, generator=gen) * span
        else:
            t, l_ = self.placement.offset(self.image_size, self.size)
            top, left = torch.full((n,), float(t)), torch.full((n,), float(l_))
        dev = x.device
        return eot_paste(x, delta, mask, angle.to(dev), scale.to(dev), top.to(dev), left.to(dev))

    @classmethod
    def check_config(cls, cfg, image_size: int, where: str = "attack") -> None:
        """LaVAN's checks, and with a placement mask: the box every transformed patch may touch fits in it."""
        super().check_config(cfg, image_size, where)
        lo, hi = cfg.scale_range
        if cfg.region is None or (cfg.rotation == 0 and lo == hi == 1.0):
            return
        place = cls.config_placement(cfg)
        for s in cfg.sizes:
            b = eot_footprint(s, cfg.rotation, hi)
            if cfg.random_placement or not place.fixed:
                check(bool(place.allowed(image_size, b).any()),
                      f"{where}: no {b} px box (a {s} px patch rotated by up to {cfg.rotation:g}° and scaled by up to "
                      f"{hi:g}) fits inside the placement region {cfg.region!r}")
            else:
                top, left = place.offset(image_size, s)
                t0, l0 = math.floor(top + (s - b) / 2), math.floor(left + (s - b) / 2)
                inside = 0 <= t0 and 0 <= l0 and t0 + b + 1 <= image_size and l0 + b + 1 <= image_size and bool(
                    region_mask(cfg.region, image_size)[t0:t0 + b + 1, l0:l0 + b + 1].all())
                check(inside, f"{where}: a {s} px patch at {cfg.placement}, rotated by up to {cfg.rotation:g}° and scaled "
                              f"by up to {hi:g}, leaves the placement region {cfg.region!r}")

    def base_meta(self) -> dict:
        return {**super().base_meta(), "loss": "log-prob target (Eq. 2)"}

    def extra_meta(self) -> dict:
        return {"rotation": self.rotation, "scale_range": list(self.scale_range)}

