"""Image files <-> tensors for `patchbench defend` (PNG/JPEG in, PNG out)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from patchbench.errors import PatchbenchError
from patchbench.util import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def collect_images(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise PatchbenchError(f"no PNG/JPEG images in directory {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise PatchbenchError(f"image file not found: {p}")
    stems = [f.stem for f in files]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        raise PatchbenchError(f"two inputs share the file stem {dup!r}; outputs would overwrite each other")
    return files


GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # 16-bit (or 32-bit integer) grey


def read_image(path: Path) -> torch.Tensor:
    """C×H×W float in [0, 1] for every image Pillow reads, by one rule:

    * the EXIF orientation is applied first (a phone JPEG comes out the way it is displayed);
    * grey stays 1 channel: 1-bit and 8-bit grey by /255; 16-bit grey (``I;16``, PNG's 16-bit) by
      /65535; a 32-bit integer image (``I``) by /65535 when it fits 16 bits, else by its maximum;
      floating grey (``F``) clipped to [0, 1];
    * everything else (RGB, palette, CMYK, YCbCr, ...) becomes RGB through Pillow's conversion;
    * an alpha channel (RGBA, LA, a palette with transparency) is dropped: the colour values as
      stored, not composited on a background (a defense sees the pixels the file holds).
    Any size works, down to 1×1.
    """

    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in WIDE_MODES:
                raw = np.asarray(im, dtype=np.float64)
                top = 65535.0 if raw.max(initial=0) <= 65535 else float(raw.max())
                arr = (raw.clip(0, None) / top).astype(np.float32)
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float32).clip(0, 1)
            else:
                arr = np.asarray(im.convert("L" if im.mode in GRAY_MODES else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PatchbenchError(f"cannot read image {path}: {type(exc).__name__} (not a valid PNG/JPEG)") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


def group_by_shape(images: list[torch.Tensor]) -> list[list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    return list(groups.values())


def write_png(x: torch.Tensor, path: Path) -> None:
    """Write C×H×W in [0, 1] as an 8-bit PNG (rounded), atomically."""

    arr = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
