"""Image-filter baselines of ICAART 2022 Fig. 9: JPEG, Gaussian, median and bilateral filters.

ICAART 2022 Sec. 4.3 runs "JPEG compression from Pillow, Gaussian Filter (GF) and Median Filter
(MF), Bilateral Filter (BF) [...] from scikit-learn" (the filters are scipy.ndimage /
scikit-image functions). Here each is re-implemented batched in torch on the tensor's device and
checked against that library in ``tests/test_baseline_defenses.py``:

* :class:`JPEG` — a real libjpeg round trip (torchvision.io), bytes as Pillow would get them;
* :class:`GaussianFilter` — ``scipy.ndimage.gaussian_filter`` per channel (separable conv2d);
* :class:`MedianFilter` — ``scipy.ndimage.median_filter`` per channel (pad + unfold + median);
* :class:`BilateralFilter` — ``skimage.restoration.denoise_bilateral`` incl. its quirks.

Border modes keep the names of the library each filter follows (they disagree!):
scipy.ndimage ``reflect`` (d c b a | a b c d | d c b a) is numpy.pad ``symmetric``; scipy
``mirror`` (d c b | a b c d | c b a) is numpy ``reflect`` and torch ``F.pad(mode="reflect")``.
:func:`pad2d` builds every mode by index arithmetic, so any pad width works (torch's reflect
pad needs pad < size).

None of these filters has a smoothing factor: ``uses_lambda`` is False and ``apply`` ignores
``lam``. The work happens once in ``maps`` (``{"out": ...}``); ``apply`` returns it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from patchbench.defenses.base import Defense
from patchbench.errors import PatchbenchError

# library mode name -> index rule used by pad2d
SCIPY_MODES = {"reflect": "symmetric", "mirror": "mirror", "nearest": "edge", "constant": "constant",
               "wrap": "wrap", "grid-wrap": "wrap"}
NUMPY_MODES = {"symmetric": "symmetric", "reflect": "mirror", "edge": "edge", "constant": "constant", "wrap": "wrap"}


def _border_index(n: int, before: int, after: int, rule: str, device) -> torch.Tensor:
    """Source index of every position of an axis of length n padded by (before, after)."""
    i = torch.arange(-before, n + after, device=device)
    if rule == "edge":
        return i.clamp(0, n - 1)
    if rule == "wrap":
        return i.remainder(n)
    if rule == "symmetric":  # half-sample symmetric, period 2n
        i = i.remainder(2 * n)
        return torch.where(i < n, i, 2 * n - 1 - i)
    if rule == "mirror":  # whole-sample symmetric, period 2n - 2
        if n == 1:
            return torch.zeros_like(i)
        i = i.remainder(2 * n - 2)
        return torch.where(i < n, i, 2 * n - 2 - i)
    raise ValueError(rule)


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, rule: str, cval: float = 0.0) -> torch.Tensor:
    """Pad the last two axes; ``rule`` is one of constant, edge, wrap, symmetric, mirror."""
    if rule == "constant":
        return F.pad(x, (left, right, top, bottom), value=cval)
    h, w = x.shape[-2:]
    rows = _border_index(h, top, bottom, rule, x.device)
    cols = _border_index(w, left, right, rule, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _check_mode(defense: str, mode: str, modes: dict[str, str]) -> None:
    if mode not in modes:
        raise PatchbenchError(f"{defense} mode must be one of {', '.join(modes)}, got {mode!r}")


# ---- JPEG ------------------------------------------------------------------------------------


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 by round(255·x), ties to even (numpy.rint). Lossless for images read
    from 8-bit files (x = k/255), which is what the paper handed to Pillow. (torchvision's
    ``to_pil_image`` truncates instead, a bias of -0.5/255 on average.)"""
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def jpeg_roundtrip(x: torch.Tensor, quality: int = 75, backend: str = "auto") -> torch.Tensor:
    """Encode every image as a JPEG at ``quality`` and decode it again (torchvision.io, libjpeg).

    Encoder settings are libjpeg's defaults, which are also Pillow's: baseline, 4:2:0 chroma
    subsampling for RGB, standard tables scaled by ``quality``, no optimize; decoding uses the
    default islow IDCT with fancy upsampling. ``backend="auto"`` encodes/decodes on the tensor's
    device (nvJPEG on CUDA, whose output differs from libjpeg by a few grey levels) and falls back
    to the CPU codec where the device has none (e.g. 1-channel images on CUDA); ``"cpu"`` always
    uses libjpeg, bit-compatible with Pillow up to the libjpeg-turbo version.
    """
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

    n, c = x.shape[:2]
    mode = ImageReadMode.GRAY if c == 1 else ImageReadMode.RGB
    u8 = to_uint8(x.detach())
    decoded = None
    if backend == "auto" and u8.device.type == "cuda":
        try:
            data = [d.cpu() for d in encode_jpeg(list(u8), quality=quality)]
            decoded = decode_jpeg(data, mode=mode, device=u8.device)
        except (RuntimeError, NotImplementedError, ValueError):
            decoded = None
    if decoded is None:
        def roundtrip(img: torch.Tensor) -> torch.Tensor:
            return decode_jpeg(encode_jpeg(img, quality=quality), mode=mode)

        # libjpeg runs with the GIL released: one image per thread (as many as torch's threads)
        decoded = list(_codec_pool().map(roundtrip, u8.cpu()))
    return torch.stack(decoded).to(x.device).to(x.dtype).div_(255)


_POOL: list = []


def _codec_pool():
    """A thread pool for the CPU codec, sized to torch's thread count (made once, resized on change)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, torch.get_num_threads())
    if not _POOL or _POOL[0][0] != workers:
        if _POOL:
            _POOL.pop()[1].shutdown(wait=False)
        _POOL.append((workers, ThreadPoolExecutor(workers, thread_name_prefix="patchbench-jpeg",
                                                  initializer=torch.set_num_threads, initargs=(1,))))
    return _POOL[0][1]


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

    def __post_init__(self):
        if not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise PatchbenchError(f"jpeg quality must be an integer in 1..100, got {self.quality!r}")
        if self.backend not in ("auto", "cpu"):
            raise PatchbenchError(f"jpeg backend must be auto or cpu, got {self.backend!r}")

    def maps(self, x, model=None):
        if x.shape[1] not in (1, 3):
            raise PatchbenchError(f"jpeg needs 1- or 3-channel images, got {x.shape[1]} channels")
        return {"out": jpeg_roundtrip(x, self.quality, self.backend)}

    def apply(self, x, maps, lam=None):
        return maps["out"]


# ---- Gaussian --------------------------------------------------------------------------------


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's kernel: radius int(truncate·σ + 0.5), exp(-x²/2σ²) normalized to sum 1 (float64)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / sigma**2 * t**2)
    return phi / phi.sum()


def gaussian_filter(x: torch.Tensor, sigma: float = 1.0, truncate: float = 4.0, mode: str = "reflect",
                    cval: float = 0.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(x, sigma=(0, 0, σ, σ), truncate, mode, cval)``: each channel
    filtered alone, along H then W. ``mode`` uses scipy's names.

    Each 1-D pass is a sum of shifted slices times the taps (2r+1 elementwise passes) rather
    than conv2d, whose CPU algorithm depends on the batch size: this keeps an image's output
    bit-identical whatever its batch mates."""
    if sigma == 0:
        return x.clone()
    k = gaussian_kernel1d(sigma, truncate).tolist()
    r = (len(k) - 1) // 2
    h, w = x.shape[-2:]
    y = pad2d(x, r, r, r, r, SCIPY_MODES[mode], cval)
    y = sum(k[i] * y[..., i:i + h, :] for i in range(2 * r + 1))
    return sum(k[i] * y[..., :, i:i + w] for i in range(2 * r + 1))


@dataclasses.dataclass
class GaussianFilter(Defense):
    """Gaussian filter (Xu et al. 2017 feature squeezing; ICAART Fig. 9 "GF").

    Defaults follow scipy.ndimage.gaussian_filter: ``truncate`` 4, ``mode`` "reflect"
    (half-sample symmetric), ``cval`` 0; ``sigma`` 1 px (the paper gives no σ).
    """

    name: ClassVar[str] = "gaussian"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"  # a linear filter: autograd through the convolutions

    sigma: float = 1.0
    truncate: float = 4.0
    mode: str = "reflect"  # scipy.ndimage names: reflect | mirror | nearest | constant | wrap | grid-wrap
    cval: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.sigma, (int, float)) and self.sigma >= 0):
            raise PatchbenchError(f"gaussian sigma must be a number >= 0, got {self.sigma!r}")
        if not (isinstance(self.truncate, (int, float)) and self.truncate > 0):
            raise PatchbenchError(f"gaussian truncate must be a number > 0, got {self.truncate!r}")
        _check_mode("gaussian", self.mode, SCIPY_MODES)
        if not (isinstance(self.cval, (int, float)) and 0 <= self.cval <= 1):
            raise PatchbenchError(f"gaussian cval must be in [0, 1], got {self.cval!r}")

    def maps(self, x, model=None):
        return {"out": gaussian_filter(x, float(self.sigma), float(self.truncate), self.mode, self.cval).clamp(0, 1)}

    def apply(self, x, maps, lam=None):
        return maps["out"]


# ---- median ----------------------------------------------------------------------------------


def _med3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Elementwise median of three: max(min(a, b), min(max(a, b), c))."""
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def median3x3(y: torch.Tensor) -> torch.Tensor:
    """The 3×3 median of every interior pixel of the padded batch ``y`` (N×C×(H+2)×(W+2)) by a
    min/max network instead of a sort. Each vertical triple is sorted once (lo ≤ mid ≤ hi, shared by
    the three windows that contain it); the median of the nine values is then
    med3(max of the three lows, med3 of the three mids, min of the three highs), the exact
    sorted-columns median-of-9 network of hardware median filters (e.g. Smith 1996, Xilinx XAPP
    "median filter"); checked exhaustively on 0/1/2-valued windows and against scipy in the tests.
    18 elementwise passes over the batch, no copy per window."""
    h, w = y.shape[-2] - 2, y.shape[-1] - 2
    a, b, c = y[..., 0:h, :], y[..., 1:h + 1, :], y[..., 2:h + 2, :]
    if not (torch.is_grad_enabled() and y.requires_grad):
        return _median3x3_in_place(a, b, c, w)
    lo1, hi1 = torch.minimum(a, b), torch.maximum(a, b)
    lo, t = torch.minimum(lo1, c), torch.maximum(lo1, c)
    mid, hi = torch.minimum(hi1, t), torch.maximum(hi1, t)
    cols = lambda v: (v[..., 0:w], v[..., 1:w + 1], v[..., 2:w + 2])  # noqa: E731
    (l0, l1, l2), (m0, m1, m2), (h0, h1, h2) = cols(lo), cols(mid), cols(hi)
    max_lo = torch.maximum(torch.maximum(l0, l1), l2)
    min_hi = torch.minimum(torch.minimum(h0, h1), h2)
    return _med3(max_lo, _med3(m0, m1, m2), min_hi)


def _median3x3_in_place(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, w: int) -> torch.Tensor:
    """:func:`median3x3`'s network with 8 fresh tensors instead of 18 (each is a page-faulting
    allocation on the CPU, which cost more than the min/max itself): results overwrite inputs that
    are no longer needed (``out=`` an operand is safe for elementwise ops)."""
    lo1, hi1 = torch.minimum(a, b), torch.maximum(a, b)
    lo = torch.minimum(lo1, c)
    t = torch.maximum(lo1, c, out=lo1)
    mid = torch.minimum(hi1, t)
    hi = torch.maximum(hi1, t, out=hi1)
    max_lo = torch.maximum(lo[..., 0:w], lo[..., 1:w + 1])
    torch.maximum(max_lo, lo[..., 2:w + 2], out=max_lo)
    min_hi = torch.minimum(hi[..., 0:w], hi[..., 1:w + 1])
    torch.minimum(min_hi, hi[..., 2:w + 2], out=min_hi)
    m0, m1, m2 = mid[..., 0:w], mid[..., 1:w + 1], mid[..., 2:w + 2]
    med_mid = torch.minimum(m0, m1)
    upper = torch.maximum(m0, m1)
    torch.minimum(upper, m2, out=upper)
    torch.maximum(med_mid, upper, out=med_mid)  # med3(m0, m1, m2)
    low = torch.minimum(max_lo, med_mid, out=upper)  # med3(max_lo, med_mid, min_hi), into spent buffers
    torch.maximum(max_lo, med_mid, out=max_lo)
    torch.minimum(max_lo, min_hi, out=max_lo)
    return torch.maximum(low, max_lo, out=low)


def median_filter(x: torch.Tensor, size: int = 3, mode: str = "reflect", cval: float = 0.0) -> torch.Tensor:
    """``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode, cval)`` for odd ``size``.

    Size 3 (the Fig. 9 baseline) uses the min/max network of :func:`median3x3`; other sizes pad,
    gather the size×size windows with ``unfold`` (size² copies of the batch) and take the median."""
    n, c, h, w = x.shape
    r = size // 2
    y = pad2d(x, r, r, r, r, SCIPY_MODES[mode], cval)
    if size == 3:
        return median3x3(y)
    windows = y.unfold(2, size, 1).unfold(3, size, 1)  # N×C×H×W×size×size
    return windows.reshape(n, c, h, w, size * size).median(-1).values


@dataclasses.dataclass
class MedianFilter(Defense):
    """Median filter (Xu et al. 2017 feature squeezing; ICAART Fig. 9 "MF").

    ``size`` 3 (odd sizes only, so the median is one of the window's values), scipy's ``mode``
    "reflect" and ``cval`` 0.
    """

    name: ClassVar[str] = "median"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"  # the median selects one input per pixel: gradient 1 there (a.e.)

    size: int = 3
    mode: str = "reflect"  # scipy.ndimage names
    cval: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.size, int) and self.size >= 1 and self.size % 2 == 1):
            raise PatchbenchError(f"median size must be an odd integer >= 1, got {self.size!r}")
        _check_mode("median", self.mode, SCIPY_MODES)
        if not (isinstance(self.cval, (int, float)) and 0 <= self.cval <= 1):
            raise PatchbenchError(f"median cval must be in [0, 1], got {self.cval!r}")

    def maps(self, x, model=None):
        return {"out": median_filter(x, self.size, self.mode, self.cval)}

    def apply(self, x, maps, lam=None):
        return maps["out"]


# ---- bilateral -------------------------------------------------------------------------------


def spatial_weights(win_size: int, sigma_spatial: float, compat: str = "skimage") -> torch.Tensor:
    """win_size×win_size spatial weights exp(-d²/2σ²), float64.

    ``compat="skimage"`` reproduces skimage's table exactly: it is built on the grid
    ``arange(-win_size // 2, win_size // 2 + 1)`` — win_size+1 points, since -5 // 2 == -3 — and
    read as ``lut[kr * win_size + kc]``, so the weights used are the first win_size² entries of a
    (win_size+1)² table: an off-centre, asymmetric kernel (checked against skimage 0.26 with an
    impulse image). ``compat="exact"`` is the centred Gaussian the skimage docstring describes.
    """
    if compat == "skimage":
        grid = torch.arange(-win_size // 2, win_size // 2 + 1, dtype=torch.float64)
    else:
        grid = torch.arange(-(win_size // 2), win_size // 2 + 1, dtype=torch.float64)
    rr, cc = torch.meshgrid(grid, grid, indexing="ij")
    lut = torch.exp(-0.5 * (rr**2 + cc**2) / sigma_spatial**2).flatten()
    return lut[: win_size * win_size].view(win_size, win_size)


def bilateral_filter(x: torch.Tensor, win_size: int | None = None, sigma_color: float | None = None,
                     sigma_spatial: float = 1.0, bins: int = 10000, mode: str = "constant", cval: float = 0.0,
                     compat: str = "skimage") -> torch.Tensor:
    """Bilateral filter of each image (Tomasi & Manduchi 1998) following
    ``skimage.restoration.denoise_bilateral(img, win_size, sigma_color, sigma_spatial, bins, mode,
    cval, channel_axis=-1 if C == 3 else None)``.

    out(p) = Σ_q s(q - p)·r(‖x(q) - x(p)‖) x(q) / Σ_q s(q - p)·r(‖…‖) over the window, the colour
    distance taken over all channels together; with skimage's per-image choices: ``sigma_color``
    None → the image's std (all channels, ddof 0); a constant image is returned unchanged;
    out-of-image pixels come from ``mode`` (numpy.pad names, default constant 0) and take part
    in the sum like any other pixel. ``compat="skimage"`` also copies its look-up tables:
    r(d) = exp(-½ (k·m/bins)² / σc²) with bin k = min(⌊d·(bins // C) / m⌋, bins - 1) and m the
    image's max — the distance is binned *and* divided by the channel count C (``bins / dims`` is
    an integer division in its Cython code: found by matching its output) — and the off-centre
    spatial table of :func:`spatial_weights`. ``compat="exact"``: r(d) = exp(-½ d²/σc²),
    centred Gaussian s, ``bins`` unused.

    One pass per window offset (win_size² passes, each over the whole batch); memory O(batch).
    """
    n, c, h, w = x.shape
    if win_size is None:
        win_size = max(5, 2 * math.ceil(3 * sigma_spatial) + 1)
    s = spatial_weights(win_size, sigma_spatial, compat).to(x)
    flat = x.flatten(1)
    vmax, vmin = flat.amax(1).view(n, 1, 1, 1), flat.amin(1).view(n, 1, 1, 1)
    if sigma_color is None:
        sc = flat.std(1, correction=0).view(n, 1, 1, 1)
    else:
        sc = torch.full_like(vmax, sigma_color)
    constant = vmax == vmin
    sc = torch.where(sc > 0, sc, torch.ones_like(sc))  # only constant images have std 0
    m = torch.where(vmax > 0, vmax, torch.ones_like(vmax))
    r = win_size // 2
    xp = pad2d(x, r, r, r, r, NUMPY_MODES[mode], cval)
    num = torch.zeros_like(x)
    den = torch.zeros_like(x[:, :1])
    for kr in range(win_size):
        for kc in range(win_size):
            v = xp[:, :, kr:kr + h, kc:kc + w]
            d = ((x - v) ** 2).sum(1, keepdim=True).sqrt()
            if compat == "skimage":
                d = (d * ((bins // c) / m)).floor().clamp(max=bins - 1) * (m / bins)
            weight = s[kr, kc] * torch.exp(-0.5 * (d**2 / sc**2))
            num += weight * v
            den += weight
    return torch.where(constant, x, num / den)


@dataclasses.dataclass
class BilateralFilter(Defense):
    """Bilateral filter (ICAART Fig. 9 "BF", scikit-image's ``denoise_bilateral``).

    Defaults are skimage's: ``win_size`` None → max(5, 2⌈3σs⌉ + 1), ``sigma_color`` None → the
    image's std, ``sigma_spatial`` 1, ``bins`` 10000, ``mode`` "constant" (numpy.pad names:
    constant | edge | symmetric | reflect | wrap), ``cval`` 0, ``compat`` "skimage" (its binned,
    channel-scaled range weights and off-centre spatial table, see :func:`bilateral_filter`);
    ``compat="exact"`` is the textbook filter. Difference from skimage: ``win_size`` must be odd
    (skimage silently uses win_size - 1 for even sizes).
    """

    name: ClassVar[str] = "bilateral"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "bpda"  # range weights from binned intensities: identity backward

    sigma_color: float | None = None
    sigma_spatial: float = 1.0
    win_size: int | None = None
    bins: int = 10000
    mode: str = "constant"  # numpy.pad names
    cval: float = 0.0
    compat: str = "skimage"  # skimage | exact

    def __post_init__(self):
        if self.sigma_color is not None and not (isinstance(self.sigma_color, (int, float)) and self.sigma_color > 0):
            raise PatchbenchError(f"bilateral sigma_color must be None (image std) or > 0, got {self.sigma_color!r}")
        if not (isinstance(self.sigma_spatial, (int, float)) and self.sigma_spatial > 0):
            raise PatchbenchError(f"bilateral sigma_spatial must be > 0, got {self.sigma_spatial!r}")
        if self.win_size is not None and not (isinstance(self.win_size, int) and self.win_size >= 1 and self.win_size % 2):
            raise PatchbenchError(f"bilateral win_size must be None or an odd integer >= 1, got {self.win_size!r}")
        if not (isinstance(self.bins, int) and self.bins >= 1):
            raise PatchbenchError(f"bilateral bins must be an integer >= 1, got {self.bins!r}")
        _check_mode("bilateral", self.mode, NUMPY_MODES)
        if not (isinstance(self.cval, (int, float)) and 0 <= self.cval <= 1):
            raise PatchbenchError(f"bilateral cval must be in [0, 1], got {self.cval!r}")
        if self.compat not in ("skimage", "exact"):
            raise PatchbenchError(f"bilateral compat must be skimage or exact, got {self.compat!r}")

    def maps(self, x, model=None):
        out = bilateral_filter(x, self.win_size, self.sigma_color, float(self.sigma_spatial), self.bins,
                               self.mode, self.cval, self.compat)
        return {"out": out.clamp(0, 1)}

    def apply(self, x, maps, lam=None):
        return maps["out"]
