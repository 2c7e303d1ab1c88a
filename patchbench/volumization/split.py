"""Splitting images into the non-overlapping patches of volumization (BMVC 2023 Eq. 3-4) and back.

:func:`split_patches` / :func:`merge_patches`: the patches are exactly the image (Eq. 4, pixel
conservation); the round trip is bit-exact. Patches are numbered in row-major grid order.
When p_h ∤ H or p_w ∤ W, ``pad`` decides: ``"none"`` refuses, ``"zero"`` / ``"reflect"`` /
``"replicate"`` pad the bottom/right edge to the next multiple, so the padded pixels belong
to the last row/column of patches (and take part in their metrics); :func:`merge_patches`
crops them off again when given the image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from patchbench.errors import check, is_int

PADS = ("none", "zero", "reflect", "replicate")
_PAD_MODES = {"zero": "constant", "reflect": "reflect", "replicate": "replicate"}


def as_patch_size(patch) -> tuple[int, int]:
    if is_int(patch):
        patch = (patch, patch)
    check(isinstance(patch, (tuple, list)) and len(patch) == 2 and all(is_int(p) and p >= 1 for p in patch),
          f"patch must be an integer >= 1 or a pair (ph, pw) of them, got {patch!r}")
    return int(patch[0]), int(patch[1])


def split_patches(x: torch.Tensor, patch, pad: str = "none") -> tuple[torch.Tensor, tuple[int, int]]:
    """Split images (B, C, H, W) into ``(patches (B, N, C, ph, pw), grid (gh, gw))``, N = gh·gw
    non-overlapping patches in row-major grid order (patch n covers rows ⌊n/gw⌋·ph.., columns
    (n mod gw)·pw..); Eq. 4: the patches are exactly the image.

    ``patch``: an int or (ph, pw). When ph ∤ H or pw ∤ W, ``pad="none"`` raises; ``"zero"``,
    ``"reflect"`` or ``"replicate"`` pads the bottom/right edge to the next multiple, so the
    padded pixels belong to the last row/column of patches. A pure reshape/permute: no loops.
    """
    check(isinstance(x, torch.Tensor) and x.ndim == 4, f"split_patches expects images (B, C, H, W), got shape {shape_of(x)}")
    ph, pw = as_patch_size(patch)
    check(pad in PADS, f"pad must be one of {', '.join(PADS)}, got {pad!r}")
    b, c, h, w = x.shape
    gh, gw = -(-h // ph), -(-w // pw)
    ph_pad, pw_pad = gh * ph - h, gw * pw - w
    if ph_pad or pw_pad:
        check(pad != "none", f"image size {h}×{w} is not a multiple of the patch size {ph}×{pw}; pass pad='zero', 'reflect' or "
                             f"'replicate' (pads bottom/right to {gh * ph}×{gw * pw}) or a patch size that divides it")
        check(pad != "reflect" or (ph_pad < h and pw_pad < w),
              f"pad='reflect' needs padding smaller than the image ({h}×{w} padded by {ph_pad}×{pw_pad}); use 'replicate' or 'zero'")
        x = F.pad(x, (0, pw_pad, 0, ph_pad), mode=_PAD_MODES[pad])
    patches = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, ph, pw)
    return patches, (gh, gw)


def merge_patches(patches: torch.Tensor, grid: tuple[int, int], image_size=None) -> torch.Tensor:
    """The exact inverse of :func:`split_patches`: (B, N, C, ph, pw) in row-major grid order ->
    (B, C, gh·ph, gw·pw), cropped to ``image_size`` (int or (H, W)) when given (drops padding)."""
    check(isinstance(patches, torch.Tensor) and patches.ndim == 5,
          f"merge_patches expects patches (B, N, C, ph, pw), got shape {shape_of(patches)}")
    check(isinstance(grid, (tuple, list)) and len(grid) == 2 and all(is_int(g) and g >= 1 for g in grid),
          f"grid must be a pair (gh, gw) of integers >= 1, got {grid!r}")
    b, n, c, ph, pw = patches.shape
    gh, gw = grid
    check(n == gh * gw, f"{n} patches do not fill a {gh}×{gw} grid")
    x = patches.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * ph, gw * pw)
    if image_size is not None:
        h, w = as_patch_size(image_size)
        check(h <= gh * ph and w <= gw * pw, f"image_size {h}×{w} is larger than the patches' {gh * ph}×{gw * pw}")
        x = x[..., :h, :w]
    return x


def shape_of(x) -> str:
    return tuple(x.shape).__repr__() if isinstance(x, torch.Tensor) else type(x).__name__

