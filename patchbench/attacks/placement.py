"""Where a patch goes: a fixed place (a named corner with a margin, or the centre), a random place per
image, and a placement mask (a region) that both the training of a patch and its evaluation keep to.

* A **fixed** placement (ICAART Sec. 4.1: top-right, 10 px from the corner at 400 px) puts the
  patch's box at one offset on every image.
* ``random``: each image gets its own offset, uniform over the positions allowed (the whole
  image, or the region). In evaluation the offset of image ``i`` is drawn from ``(seed, i)`` by a
  counter-based hash (:func:`uniforms`), so a cell is the same whatever the batch size, the order
  or the shard that computes it; in training the attack's own generator draws them.
* A **region** (placement mask) says where the patch's pixels may go: a top-left position is
  allowed when the patch's whole box lies inside the mask (:meth:`Placement.allowed`). The mask
  is a spec: ``box:TOP,LEFT,HEIGHT,WIDTH`` (pixels), ``quadrant:NAME`` (one of the five boxes of
  the BMVC 2023 region protocol, :func:`patchbench.attacks.regions.protocol_regions`: top-left,
  top-right, bottom-left, bottom-right, center), or an image file whose pixels of value >= 128
  (as 8-bit grey) are allowed, resized to the images' size by nearest neighbour when it differs.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from patchbench.attacks.regions import protocol_regions
from patchbench.errors import PatchbenchError, check

CORNERS = ("top-right", "top-left", "bottom-right", "bottom-left", "center")
PLACEMENTS = (*CORNERS, "random")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")  # protocol_regions' order


# ---- per-image random numbers, independent of batching ---------------------------------------------

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele, Lea & Flood, OOPSLA 2014), on uint64 arrays (wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, indices: torch.Tensor, stream: int) -> torch.Tensor:
    """U[0, 1) per index (float64): the ``index + 1``-th output of a SplitMix64 generator whose state
    starts at a hash of ``(seed, stream)`` — a counter-based draw: the same index always gets the same
    number, whatever else is drawn, in whatever order or batch."""
    with np.errstate(over="ignore"):
        start = _mix64(np.array([(seed % 2 ** 56) * 256 + stream % 256], dtype=np.uint64))
        z = np.asarray(indices.detach().cpu().numpy(), dtype=np.uint64)
        z = _mix64(start + (z + np.uint64(1)) * np.uint64(_GOLDEN))
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) / 2.0 ** 53)


# ---- regions --------------------------------------------------------------------------------------


def _file_mask(path: Path, image_size: int) -> torch.Tensor:

    if not path.is_file():
        raise PatchbenchError(f"placement region: no such mask file {path} (or use box:T,L,H,W / quadrant:NAME)")
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
            if grey.size != (image_size, image_size):
                grey = grey.resize((image_size, image_size), Image.NEAREST)
            arr = np.asarray(grey)
    except (UnidentifiedImageError, OSError) as exc:
        raise PatchbenchError(f"placement region: cannot read mask image {path} ({type(exc).__name__})") from None
    return torch.from_numpy(arr >= 128)


@lru_cache(maxsize=64)
def _mask(spec: str, image_size: int, _stamp) -> torch.Tensor:
    if spec.startswith("box:"):
        try:
            top, left, h, w = (int(v) for v in spec[4:].split(","))
        except ValueError:
            raise PatchbenchError(f"placement region {spec!r}: expected box:TOP,LEFT,HEIGHT,WIDTH in pixels") from None
        check(top >= 0 and left >= 0 and h >= 1 and w >= 1 and top + h <= image_size and left + w <= image_size,
              f"placement region {spec!r} does not lie inside {image_size} px images")
        m = torch.zeros(image_size, image_size, dtype=torch.bool)
        m[top:top + h, left:left + w] = True
        return m
    if spec.startswith("quadrant:"):

        name = spec.split(":", 1)[1]
        check(name in QUADRANTS, f"placement region {spec!r}: quadrant must be one of {', '.join(QUADRANTS)}")
        top, left, h, w = protocol_regions(image_size, 1)[QUADRANTS.index(name)]
        m = torch.zeros(image_size, image_size, dtype=torch.bool)
        m[top:top + h, left:left + w] = True
        return m
    return _file_mask(Path(spec), image_size)


def _stamp(spec: str):
    """What invalidates a cached mask: a file's size and modification time."""
    if spec.startswith(("box:", "quadrant:")):
        return None
    p = Path(spec)
    return (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None


def region_mask(spec: str, image_size: int) -> torch.Tensor:
    """The H×W bool mask (True: a patch pixel may go there) of a region spec at ``image_size``."""
    check(isinstance(spec, str) and spec.strip() != "", f"placement region must be a non-empty string, got {spec!r}")
    return _mask(spec, image_size, _stamp(spec))


def region_id(spec: str | None) -> str | None:
    """The region's identity in a cell's placement and a patch's cache key: the spec itself, or for
    a mask file ``file:<sha256 of its bytes, 12 hex>`` (a mask edited in place is another region)."""
    if spec is None or spec.startswith(("box:", "quadrant:")):
        return spec
    p = Path(spec)
    if not p.is_file():
        raise PatchbenchError(f"placement region: no such mask file {spec} (or use box:T,L,H,W / quadrant:NAME)")
    return "file:" + hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def box_positions(mask: torch.Tensor, side: int) -> torch.Tensor:
    """Bool (H-side+1)×(W-side+1): the top-left corners whose side×side box lies inside ``mask``
    (a box sum over the mask's integral image equals side²)."""
    h, w = mask.shape
    if side > h or side > w:
        return torch.zeros(0, 0, dtype=torch.bool)
    ii = torch.zeros(h + 1, w + 1, dtype=torch.int64)
    ii[1:, 1:] = mask.to(torch.int64).cumsum(0).cumsum(1)
    s = side
    inside = ii[s:, s:] - ii[:-s, s:] - ii[s:, :-s] + ii[:-s, :-s]
    return inside == s * s


def paste(images: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor,
          top: torch.Tensor | int, left: torch.Tensor | int) -> torch.Tensor:
    """x' = (1 - m) ⊙ x + m ⊙ δ at (top, left); per-image offsets when they are tensors.

    ``pixels`` is one patch (C×s×s) or one per image (N×C×s×s). Differentiable w.r.t.
    ``pixels``; batched (advanced indexing, no per-image Python loop).
    """
    n, c, h, w = images.shape
    s = pixels.shape[-1]
    if isinstance(top, int) and isinstance(left, int):
        out = images.clone()
        region = out[:, :, top:top + s, left:left + s]
        out[:, :, top:top + s, left:left + s] = (1 - mask) * region + mask * pixels
        return out
    ar = torch.arange(s, device=images.device)
    b = torch.arange(n, device=images.device)[:, None, None]
    rows = (torch.as_tensor(top, device=images.device)[:, None] + ar)[:, :, None]
    cols = (torch.as_tensor(left, device=images.device)[:, None] + ar)[:, None, :]
    out = images.clone()
    hw = out.permute(0, 2, 3, 1)  # view: N×H×W×C
    region = hw[b, rows, cols]  # N×s×s×C
    m = mask.permute(1, 2, 0)
    delta = pixels.permute(1, 2, 0) if pixels.ndim == 3 else pixels.permute(0, 2, 3, 1)
    hw[b, rows, cols] = (1 - m) * region + m * delta
    return out



# ---- the placement --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a patch sits: ``kind`` a corner or ``center`` (with ``margin`` px to the corner) or
    ``random``; ``region`` a placement mask spec (None: the whole image); ``seed`` the random
    placement's seed in evaluation."""

    kind: str = "top-right"
    margin: int = 0
    region: str | None = None
    seed: int = 0

    @property
    def fixed(self) -> bool:
        return self.kind != "random"

    def corner(self, image_size: int, patch_size: int) -> tuple[int, int]:
        far = image_size - self.margin - patch_size
        if far < 0 or self.margin < 0:
            raise PatchbenchError(f"a {patch_size} px patch with margin {self.margin} does not fit {image_size} px images")
        return {
            "top-right": (self.margin, far),
            "top-left": (self.margin, self.margin),
            "bottom-right": (far, far),
            "bottom-left": (far, self.margin),
            "center": ((image_size - patch_size) // 2, (image_size - patch_size) // 2),
        }[self.kind]

    def offset(self, image_size: int, patch_size: int) -> tuple[int, int]:
        """The one (top, left) of a fixed placement."""
        if not self.fixed:
            raise PatchbenchError(f"placement {self.label()} puts the patch at a different place on each image; "
                                  "this step needs a fixed placement (a corner or center)")
        return self.corner(image_size, patch_size)

    def allowed(self, image_size: int, patch_size: int) -> torch.Tensor:
        """Bool (H-s+1)×(W-s+1): the top-left positions a patch of ``patch_size`` px may take."""
        if self.region is None:
            n = image_size - patch_size + 1
            return torch.ones(max(n, 0), max(n, 0), dtype=torch.bool)
        return box_positions(region_mask(self.region, image_size), patch_size)

    def check(self, image_size: int, patch_size: int, where: str = "placement") -> None:
        """A one-line error when a ``patch_size`` px patch cannot be placed so on ``image_size`` px images."""
        check(self.kind in PLACEMENTS, f"{where}: placement must be one of {', '.join(PLACEMENTS)}, got {self.kind!r}")
        allowed = self.allowed(image_size, patch_size)
        if self.fixed:
            top, left = self.corner(image_size, patch_size)
            check(bool(allowed[top, left]), f"{where}: a {patch_size} px patch at {self.kind} (margin {self.margin}) "
                                            f"is not inside the placement region {self.region!r}")
        check(bool(allowed.any()), f"{where}: no {patch_size} px box fits inside the placement region {self.region!r}")

    def positions(self, image_size: int, patch_size: int) -> torch.Tensor:
        """K×2 (top, left) of every allowed position, row-major."""
        return self.allowed(image_size, patch_size).nonzero()

    def offsets(self, image_size: int, patch_size: int, indices: torch.Tensor):
        """(top, left) for the images of dataset ``indices``: two ints (fixed) or two tensors."""
        if self.fixed:
            return self.offset(image_size, patch_size)
        pos = self.positions(image_size, patch_size)
        k = (uniforms(self.seed, indices, 0) * len(pos)).long().clamp_(max=len(pos) - 1)
        chosen = pos[k].to(indices.device)
        return chosen[:, 0], chosen[:, 1]

    def sample(self, n: int, image_size: int, patch_size: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random (top, left) inside the region, drawn from ``gen`` (training)."""
        pos = self.positions(image_size, patch_size)
        chosen = pos[torch.randint(0, len(pos), (n,), generator=gen)]
        return chosen[:, 0].to(device), chosen[:, 1].to(device)

    def paste(self, images: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor,
              indices: torch.Tensor | None = None) -> torch.Tensor:
        if indices is None:
            indices = torch.arange(len(images))
        top, left = self.offsets(images.shape[-1], pixels.shape[-1], indices)
        return paste(images, pixels, mask, top, left)

    def label(self) -> str:
        """The cell's ``placement`` column: ``top-right+2`` as before; ``random+s0``; ``@region`` appended."""
        base = f"{self.kind}+{self.margin}" if self.fixed else f"random+s{self.seed}"
        return base if self.region is None else f"{base}@{region_id(self.region)}"

    def meta(self) -> dict:
        """The patch metadata that records this placement (read back by :func:`placement_from_meta`)."""
        out = {"placement": self.kind, "margin": self.margin}
        if self.region is not None:
            out["region"] = self.region
        if not self.fixed:
            out["placement_seed"] = self.seed
        return out


def eot_footprint(size: int, rotation: float, scale_hi: float) -> int:
    """Side of the integer box that holds every pixel a ``size`` px patch touches when rotated by at
    most ``rotation`` degrees and scaled by at most ``scale_hi`` about its centre and bilinearly
    resampled (Adversarial Patch's EoT): the rotated square of side (size + 1)·scale has a bounding
    box of side (size + 1)·scale·(|cos θ| + |sin θ|), largest at min(θ, 45°); plus one pixel."""
    theta = math.radians(min(abs(rotation), 45.0))
    return math.ceil((size + 1) * scale_hi * (math.cos(theta) + math.sin(theta)) - 1e-9) + 1
