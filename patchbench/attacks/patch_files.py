"""Patch files a person brings: a PNG or a tensor file, read into a :class:`~patchbench.attacks.patch.Patch`.

* ``.png``: :mod:`patchbench.attacks.patch_png` — exact when it carries its ``patchbench:patch``
  chunk (what ``patchbench export-patch`` and every cached patch artifact write; its content id is
  checked here), else the picture's pixels.
* ``.pt`` / ``.pth``: ``torch.load(weights_only=True)`` — patchbench's own ``{"pixels", "mask"}``
  artifact or a bare C×s×s (or s×s) tensor in [0, 1].

Metadata (attack, target, placement, ...) comes from the PNG's chunk, else from a JSON beside the
file (``stem.json``: patchbench's artifact metadata, or an exported sidecar's ``meta``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from patchbench.attacks import patch_png
from patchbench.attacks.patch import Patch
from patchbench.errors import PatchbenchError

TENSOR_SUFFIXES = (".pt", ".pth")


def sidecar_meta(path: Path) -> dict[str, Any]:
    js = path.with_suffix(".json")
    if not js.is_file():
        return {}
    try:
        data = json.loads(js.read_text())
    except (OSError, ValueError):
        raise PatchbenchError(f"patch metadata {js} is not valid JSON") from None
    meta = data.get("meta", data) if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        raise PatchbenchError(f"patch metadata {js} is not a JSON object")
    return meta


def _checked(pixels: torch.Tensor, mask: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pixels.ndim == 2:
        pixels = pixels[None]
    if (pixels.ndim != 3 or pixels.shape[0] not in (1, 3) or pixels.shape[-1] != pixels.shape[-2]
            or tuple(mask.shape) != (1, *pixels.shape[-2:])):
        raise PatchbenchError(f"{where}: a patch is C×s×s (C 1 or 3, square) with a 1×s×s mask; got {tuple(pixels.shape)}")
    if not (torch.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
        raise PatchbenchError(f"{where}: patch pixels must be finite values in [0, 1]")
    return pixels.float(), mask.float()


def read_png(path: Path) -> Patch:
    pixels, mask, meta, cid = patch_png.decode(path)
    pixels, mask = _checked(pixels, mask, str(path))
    patch = Patch(pixels, mask, sidecar_meta(path) if meta is None else meta)
    if cid is not None and patch.content_id() != cid:
        raise PatchbenchError(f"{path}: the exact patch in its {patch_png.CHUNK} chunk does not match its recorded content id")
    return patch


def read_tensor_file(path: Path) -> Patch:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PatchbenchError(f"cannot read patch file {path}: {type(exc).__name__} (not a tensor file readable "
                              "with torch.load(weights_only=True))") from None
    if isinstance(blob, dict) and isinstance(blob.get("pixels"), torch.Tensor):
        pixels = blob["pixels"]
        mask = blob["mask"] if isinstance(blob.get("mask"), torch.Tensor) else torch.ones(1, *pixels.shape[-2:])
    elif isinstance(blob, torch.Tensor):
        pixels, mask = blob, torch.ones(1, *blob.shape[-2:])
    else:
        raise PatchbenchError(f"patch file {path} holds {type(blob).__name__}: expected a C×s×s tensor or "
                              "patchbench's {'pixels', 'mask'}")
    pixels, mask = _checked(pixels.float(), mask.float(), str(path))
    return Patch(pixels, mask, sidecar_meta(path))


def load_patch_file(path: str | Path) -> Patch:
    """A patch from a PNG (exact when it carries its chunk) or a tensor file; one-line errors. A path
    without a suffix that names a patchbench artifact's stem (``my`` for ``my.pt``) reads the ``.pt``."""
    p = Path(path)
    if not p.is_file() and p.suffix == "" and p.with_suffix(".pt").is_file():
        p = p.with_suffix(".pt")
    if not p.is_file():
        raise PatchbenchError(f"patch file not found: {path}")
    suffix = p.suffix.lower()
    if suffix == ".png":
        return read_png(p)
    if suffix in TENSOR_SUFFIXES:
        return read_tensor_file(p)
    raise PatchbenchError(f"patch file {path}: expected a .png or a tensor file ({', '.join(TENSOR_SUFFIXES)})")
