"""A patch as a PNG file that is both a picture and the exact patch.

A trained patch is float32 in [0, 1] (an optimiser's steps): an 8-bit PNG rounds it to 1/255 and a
16-bit one to 1/65535, and either rounding is another patch (another patch id, other predictions:
the demo's cells move). So :func:`encode` writes the 8-bit picture a person looks at (grey or RGB,
the mask as alpha when it is not all ones; the rounding of ``torchvision.utils.save_image``) and
puts the exact tensors in the same file, in an ``iTXt`` chunk named ``patchbench:patch`` (JSON: the
float32 pixels and mask, zlib'd and base64'd, their content id and the patch's metadata).
:func:`decode` gives back the exact tensors after one check — their 8-bit rounding is the picture
(a chunk copied onto another picture, or a picture edited with the chunk kept, is refused in one
line); the caller checks the content id. A PNG without the chunk (from elsewhere, or re-saved by an
editor, which drops unknown chunks) is read as its pixels: v/255 (v/65535 for 16-bit grey), an
alpha ≥ 128 the mask.
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from patchbench.errors import PatchbenchError

CHUNK = "patchbench:patch"
FORMAT = 1
TRACES = ("loss_trace", "hit_trace")  # per-step traces stay with the cached artifact (long, not identity)


def quantize(t: torch.Tensor) -> np.ndarray:
    """8-bit values of a [0, 1] tensor as ``torchvision.utils.save_image`` writes them: ⌊255·v + 0.5⌋."""
    return t.detach().cpu().float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()


def picture(pixels: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """H×W (grey) or H×W×C uint8, with the mask as an alpha channel when it is not all ones."""
    chans = [quantize(c) for c in pixels]
    if not bool((mask == 1).all()):
        chans.append(quantize(mask[0]))
    arr = np.stack(chans, -1)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def _pack(t: torch.Tensor) -> str:
    return base64.b64encode(zlib.compress(t.detach().cpu().contiguous().float().numpy().astype("<f4").tobytes(), 9)).decode()


def _unpack(text: str, shape: list[int], where: str) -> torch.Tensor:
    n = int(np.prod(shape)) * 4
    try:
        raw = zlib.decompressobj().decompress(base64.b64decode(text, validate=True), n + 1)  # bounded by the shape
    except (ValueError, zlib.error) as exc:
        raise PatchbenchError(f"{where}: its {CHUNK} chunk is damaged ({type(exc).__name__})") from None
    if len(raw) != n:
        raise PatchbenchError(f"{where}: its {CHUNK} chunk holds {len(raw)} bytes, its shape {shape} needs {n}")
    return torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape).copy())


def lean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in TRACES}


def encode(pixels: torch.Tensor, mask: torch.Tensor, content_id: str, meta: dict[str, Any]) -> bytes:
    """The PNG bytes: the 8-bit picture plus the exact tensors and metadata in the ``patchbench:patch`` chunk."""

    payload = {"format": FORMAT, "content_id": content_id, "pixels_shape": list(pixels.shape),
               "mask_shape": list(mask.shape), "pixels": _pack(pixels), "mask": _pack(mask), "meta": lean_meta(meta)}
    info = PngInfo()
    info.add_itxt(CHUNK, json.dumps(payload, sort_keys=True), zip=False)  # the tensors are zlib'd themselves (bounded inflate)
    buf = io.BytesIO()
    Image.fromarray(picture(pixels, mask)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def decode(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any] | None, str | None]:
    """(pixels C×s×s, mask 1×s×s, the chunk's metadata or None, its content id or None) of a PNG."""

    where = str(path)
    try:
        with Image.open(path) as im:
            im.load()
            chunk = getattr(im, "text", {}).get(CHUNK)
            mode, arr = im.mode, np.asarray(im)
            if mode not in ("L", "LA", "RGB", "RGBA", "I;16", "I"):
                arr, mode = np.asarray(im.convert("RGBA")), "RGBA"
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PatchbenchError(f"cannot read patch image {path}: {type(exc).__name__}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[0] != arr.shape[1]:
        raise PatchbenchError(f"{where}: a patch is square, this image is {arr.shape[1]}×{arr.shape[0]} px")
    if chunk is not None:
        try:
            payload = json.loads(chunk)
            pixels = _unpack(payload["pixels"], payload["pixels_shape"], where)
            mask = _unpack(payload["mask"], payload["mask_shape"], where)
            meta, cid = dict(payload.get("meta") or {}), str(payload["content_id"])
        except (ValueError, KeyError, TypeError):
            raise PatchbenchError(f"{where}: its {CHUNK} chunk is not patchbench's (damaged or another format)") from None
        if pixels.ndim != 3 or mask.ndim != 3 or not np.array_equal(picture(pixels, mask).reshape(arr.shape), arr):
            raise PatchbenchError(f"{where}: the picture is not the 8-bit rounding of the exact patch it carries "
                                  f"(edited after export?); remove the {CHUNK} chunk to use the picture's pixels")
        return pixels, mask, meta, cid
    scale = 65535.0 if mode in ("I;16", "I") else 255.0
    colour = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
    pixels = torch.from_numpy(colour.astype(np.float32) / scale).permute(2, 0, 1).contiguous()
    alpha = arr[..., -1] if mode in ("LA", "RGBA") else None
    mask = (torch.ones(1, *pixels.shape[-2:]) if alpha is None
            else torch.from_numpy((alpha >= 128).astype(np.float32))[None])
    return pixels, mask, None, None
