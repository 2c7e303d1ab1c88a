"""ImageNet-Patch's placement (Pintor et al. 2023, ``pralab/ImageNet-Patch``): the patch at the image
centre, then a random affine map of the whole image plane — rotation, translation, scale — drawn per
image, applied to the patch and its mask alike, nearest-neighbour, zero outside.

The reference (``transforms/apply_patch.py``, ``transforms/my_random_affine.py``) draws the
parameters with ``torchvision.transforms.RandomAffine.get_params(degrees, translate, scale)`` —
angle ~ U(-degrees, degrees), t_x = round(U(-translate·W, translate·W)) and t_y likewise (whole
pixels), scale ~ U(lo, hi), no shear — and warps the patch canvas and its mask each with
``torchvision.transforms.functional.affine(..., interpolation=NEAREST, fill=0)`` (the rotation
about the image centre), then ``x' = x ⊙ [m' = 0] + δ' ⊙ m'``. Its mask is the centre box
``[H/2 - s/2, H/2 + s/2)`` of the 224 px canvas (``ApplyPatch._generate_mask``, s = 50).

Here the same map is computed for a whole batch at once: ``F.affine``'s inverse matrix
(``_get_inverse_affine_matrix`` with centre (0, 0) in centred pixel coordinates), its sampling grid
(``_gen_affine_grid``: pixel centres at ±(n/2 - 1/2), the matrix divided by half the size) and one
``grid_sample(nearest, zeros, align_corners=False)`` per batch with one matrix per image;
``tests/test_imagenet_patch.py`` checks it equals ``F.affine`` image by image. The parameters of image
``i`` come from ``(seed, i)`` (:func:`patchbench.attacks.placement.uniforms`): the reference's
preprocessing stack draws one set per image too (its README: "the parameters will be random sampled
when an image is taken"), from the global torch generator; its example and notebook call
``ApplyPatch`` on a batch, one draw for the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from patchbench.attacks.placement import uniforms
from patchbench.errors import PatchbenchError, check, is_number


@dataclass(frozen=True)
class AffinePlacement:
    """Random rotation (±``rotation`` degrees), translation (±``translate`` of the image side, whole
    pixels) and scale (U(``scale``)) of the centred patch, per image (ImageNet-Patch's published ranges:
    translate 0.2, rotation 45, scale 0.5-1)."""

    translate: float = 0.2
    rotation: float = 45.0
    scale: tuple[float, float] = (0.5, 1.0)
    seed: int = 0
    kind = "affine"
    fixed = False

    def __post_init__(self):
        lo, hi = self.scale
        check(is_number(self.translate) and 0 <= self.translate <= 1, f"affine placement: translate must be in 0..1, got {self.translate!r}")
        check(is_number(self.rotation) and 0 <= self.rotation <= 180, f"affine placement: rotation must be in 0..180 degrees, got {self.rotation!r}")
        check(is_number(lo) and is_number(hi) and 0 < lo <= hi, f"affine placement: scale must be [lo, hi] with 0 < lo <= hi, got {self.scale!r}")

    @classmethod
    def from_meta(cls, meta: dict) -> "AffinePlacement":
        a = meta.get("affine") or {}
        return cls(float(a.get("translate", 0.2)), float(a.get("rotation", 45.0)),
                   tuple(float(v) for v in a.get("scale", (0.5, 1.0))), int(meta.get("placement_seed", 0)))

    def meta(self) -> dict:
        return {"placement": "affine", "margin": 0, "placement_seed": self.seed,
                "affine": {"translate": self.translate, "rotation": self.rotation, "scale": list(self.scale)}}

    def label(self) -> str:
        lo, hi = self.scale
        return f"affine(t{self.translate:g},r{self.rotation:g},s{lo:g}-{hi:g})+s{self.seed}"

    def offset(self, image_size: int, patch_size: int):
        raise PatchbenchError(f"placement {self.label()} moves the patch on each image; this step needs a fixed placement")

    def centre_box(self, image_size: int, patch_size: int) -> int:
        """Top (= left) of the centred patch: ``H // 2 - s // 2`` as the reference's mask."""
        return image_size // 2 - patch_size // 2

    def check(self, image_size: int, patch_size: int, where: str = "placement") -> None:
        check(patch_size <= image_size, f"{where}: a {patch_size} px patch does not fit {image_size} px images")

    def params(self, indices: torch.Tensor, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per image: angle (degrees), t_x, t_y (whole pixels), scale — RandomAffine.get_params' laws."""
        u = [uniforms(self.seed, indices, k).numpy() for k in range(4)]
        angle = -self.rotation + 2 * self.rotation * u[0]
        max_d = float(self.translate * image_size)
        tx = np.rint(-max_d + 2 * max_d * u[1])  # Python's round() in get_params: half to even, as rint
        ty = np.rint(-max_d + 2 * max_d * u[2])
        lo, hi = self.scale
        return angle, tx, ty, lo + (hi - lo) * u[3]

    @staticmethod
    def inverse_matrices(angle, tx, ty, scale) -> np.ndarray:
        """N×2×3 float64: ``_get_inverse_affine_matrix(center=(0, 0), angle, (tx, ty), scale, shear=(0, 0))``
        per image (the output pixel -> the input pixel it samples, centred pixel coordinates), with
        Python's ``math`` as torchvision computes it (so the float32 matrix is the same to the bit)."""
        out = np.empty((len(angle), 2, 3))
        for i, (deg, x, y, sc) in enumerate(zip(angle.tolist(), tx.tolist(), ty.tolist(), scale.tolist())):
            rot = math.radians(deg)
            a, b, c, d = math.cos(rot), -math.sin(rot), math.sin(rot), math.cos(rot)
            m = [v / sc for v in (d, -b, 0.0, -c, a, 0.0)]
            m[2] += m[0] * (-0.0 - x) + m[1] * (-0.0 - y)
            m[5] += m[3] * (-0.0 - x) + m[4] * (-0.0 - y)
            out[i] = np.array(m).reshape(2, 3)
        return out

    def paste(self, images: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor,
              indices: torch.Tensor | None = None) -> torch.Tensor:
        """x' = x ⊙ [m' = 0] + δ' ⊙ m' with δ' and m' the centred patch and its mask warped per image."""
        n, c, h, w = images.shape
        check(h == w, "the affine placement takes square images")
        if indices is None:
            indices = torch.arange(n)
        s = pixels.shape[-1]
        top = self.centre_box(h, s)
        canvas = torch.zeros(1 if pixels.ndim == 3 else n, c + 1, h, w, dtype=images.dtype, device=images.device)
        canvas[:, :c, top:top + s, top:top + s] = pixels.to(images)
        canvas[:, c:, top:top + s, top:top + s] = mask.to(images)
        angle, tx, ty, scale = self.params(indices, h)
        theta = torch.from_numpy(self.inverse_matrices(angle, tx, ty, scale)).to(dtype=images.dtype, device=images.device)
        # _gen_affine_grid: pixel centres, then the matrix divided by half the size (torchvision's own steps)
        base = torch.empty(1, h, w, 3, dtype=theta.dtype, device=theta.device)
        base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w, device=theta.device))
        base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h, device=theta.device).unsqueeze_(-1))
        base[..., 2].fill_(1)
        rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], dtype=theta.dtype, device=theta.device)
        grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(rescaled).view(n, h, w, 2)
        warped = F.grid_sample(canvas.expand(n, -1, -1, -1), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        d, m = warped[:, :c], warped[:, c:]
        return images * (m == 0) + d * m


def published_footprint(patch_size: int, scale_hi: float) -> int:
    """Side of the box that holds the patch at any rotation and scale ≤ ``scale_hi``: s·hi·√2, rounded up
    (what a certifying defense must cover; PatchCleanser's ``patch_px`` in the ImageNet-Patch preset)."""
    return math.ceil(patch_size * scale_hi * math.sqrt(2))
