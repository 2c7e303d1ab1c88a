"""JPEG compression baseline of ICAART 2022 Fig. 9 ("JPEG compression from Pillow").

A real libjpeg round trip (torchvision.io), bytes as Pillow would get them, one image per thread; checked against
Pillow in ``tests/test_baseline_defenses.py``. No smoothing factor: the output is computed in
``maps`` (``{"out": ...}``) and the base class's ``apply`` returns it.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import torch

from patchbench.defenses.base import OUT, Defense, register_defense
from patchbench.errors import check, is_int


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 by round(255·x), ties to even (numpy.rint). Lossless for images read
    from 8-bit files (x = k/255), which is what the paper handed to Pillow. (torchvision's
    ``to_pil_image`` truncates instead, a bias of -0.5/255 on average.)"""
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)  # one float temporary


def jpeg_roundtrip(x: torch.Tensor, quality: int = 75, backend: str = "auto") -> torch.Tensor:
    """Encode every image as a JPEG at ``quality`` and decode it again (torchvision.io, libjpeg).

    Encoder settings are libjpeg's defaults, which are also Pillow's: baseline, 4:2:0 chroma
    subsampling for RGB, standard tables scaled by ``quality``, no optimize; decoding uses the
    default islow IDCT with fancy upsampling. ``backend="auto"`` encodes/decodes on the tensor's
    device (nvJPEG on CUDA, whose output differs from libjpeg by a few grey levels) and falls back
    to the CPU codec where the device has none (e.g. 1-channel images on CUDA); ``"cpu"`` always
    uses libjpeg, bit-compatible with Pillow up to the libjpeg-turbo version.
    """
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg  # reason: torchvision takes seconds to import; only JPEG needs it

    n, c = x.shape[:2]
    mode = ImageReadMode.GRAY if c == 1 else ImageReadMode.RGB
    x = x.detach()
    if backend == "auto" and x.device.type == "cuda":
        try:
            data = [d.cpu() for d in encode_jpeg(list(to_uint8(x)), quality=quality)]
            return torch.stack(decode_jpeg(data, mode=mode, device=x.device)).to(x.dtype).div_(255)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # nvjpeg refused this batch (build, format): the CPU codec below does it
    src = x.cpu()
    out = torch.empty_like(src)

    def roundtrip(i: int) -> None:  # one image, start to end on one thread: its pixels stay in cache
        out[i].copy_(decode_jpeg(encode_jpeg(to_uint8(src[i]), quality=quality), mode=mode)).div_(255)

    # libjpeg runs with the GIL released: one image per thread (as many as torch's threads)
    threads = torch.get_num_threads()
    try:
        list(_codec_pool(threads).map(roundtrip, range(n)))
    finally:
        if torch.get_num_threads() != threads:  # a worker's set_num_threads(1) reaches a thread that ran no parallel op yet
            torch.set_num_threads(threads)
    return out.to(x.device)


_POOL: list = []


def _codec_pool(workers: int):
    """A thread pool for the CPU codec, ``workers`` threads running torch with one thread each
    (made once, remade when the count changes)."""

    if not _POOL or _POOL[0][0] != workers:
        if _POOL:
            _POOL.pop()[1].shutdown(wait=False)
        _POOL.append((workers, ThreadPoolExecutor(workers, thread_name_prefix="patchbench-jpeg",
                                                  initializer=torch.set_num_threads, initargs=(1,))))
    return _POOL[0][1]


@register_defense
@dataclasses.dataclass
class JPEG(Defense):
    """JPEG compression (Das et al. 2018; ICAART Fig. 9 "JPEG compression from Pillow").

    ``quality`` 75 is Pillow's default; see :func:`jpeg_roundtrip` for the codec settings.
    One encode/decode per image (the codec is not batched on CPU).
    """

    name: ClassVar[str] = "jpeg"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "bpda"  # the codec quantizes: identity backward

    quality: int = 75
    backend: str = "auto"  # auto (tensor's device, CPU fallback) | cpu (libjpeg, as Pillow)

    def validate(self):
        self.require("quality", is_int(self.quality) and 1 <= self.quality <= 100, "an integer in 1..100")
        self.require_choice("backend", ("auto", "cpu"))

    def maps(self, x, model=None):
        check(x.shape[1] in (1, 3), f"jpeg needs 1- or 3-channel images, got {x.shape[1]} channels")
        return {OUT: jpeg_roundtrip(x, self.quality, self.backend)}
