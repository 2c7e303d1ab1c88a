"""Baseline defenses of ICAART 2022 Fig. 9 (JPEG, GF, MF, BF, TVM, DW) against the libraries the
paper used (Pillow, scipy.ndimage, scikit-image) or an exact slow reference."""

import io
import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch
from PIL import Image
from scipy import ndimage as ndi
from skimage.restoration import denoise_bilateral, denoise_tv_chambolle

from patchbench.defenses import DEFENSES, build_defense
from patchbench.defenses.dw import DigitalWatermarking, binarize, harmonic_inpaint
from patchbench.defenses.bilateral import bilateral_filter
from patchbench.defenses.gaussian import gaussian_filter
from patchbench.defenses.jpeg import jpeg_roundtrip, to_uint8
from patchbench.defenses.median import median3x3, median_filter
from patchbench.defenses.morphology import dilate, erode
from patchbench.defenses.padding import NUMPY_MODES, SCIPY_MODES, pad2d
from patchbench.defenses.tvm import tv_chambolle
from patchbench.errors import PatchbenchError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: with 2 intra-op threads on a busy 2-core machine, every exp/sqrt
    call waits for an OpenMP wake-up (measured 14 ms each, 150× the 1-thread time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images(n, c, h, w, seed=0, dtype=torch.float32):
    """Smooth ramp + faint noise + a noisy 'patch' square, different per image, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = (0.2 + 0.6 * yy * xx).expand(n, c, h, w).clone() + 0.05 * torch.rand(n, c, h, w, generator=gen)
    for b in range(n):
        t, left = (int(v) for v in torch.randint(0, min(h, w) - 12, (2,), generator=gen))
        x[b, :, t:t + 12, left:left + 12] = torch.rand(c, 12, 12, generator=gen)
    if c == 3:
        x[:, 1] = x[:, 1].flip(-1)
    return x.clamp(0, 1).to(dtype)


def per_image(fn, x, channel_axis=True):
    """Run a numpy function on each image (H×W×C, or H×W for one channel), back to N×C×H×W."""
    out = []
    for im in x.numpy():
        if im.shape[0] == 1:
            out.append(fn(im[0], None)[None])
        else:
            out.append(fn(im.transpose(1, 2, 0), -1).transpose(2, 0, 1))
    return np.stack(out)


class Linear(torch.nn.Module):
    """A linear classifier whose weights on a known square are ~20× larger and the same for
    every pixel of it (per class): its input gradient, hence its saliency, is large all over it."""

    def __init__(self, c, h, w, square=(8, 20, 10, 22), classes=5):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        weight = torch.randn(classes, c, h, w, generator=g)
        t, b, left, r = square
        weight[:, :, t:b, left:r] += 20 * (1 + torch.rand(classes, c, 1, 1, generator=g))
        self.weight = torch.nn.Parameter(weight.flatten(1))
        self.square = square

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


# ---- border modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["symmetric", "reflect", "edge", "wrap", "constant"])
def test_pad2d_matches_numpy_pad_even_beyond_the_image(mode):
    x = torch.arange(12.0).view(1, 1, 3, 4)
    for pads in [(1, 2, 0, 3), (7, 5, 9, 8)]:  # pad wider than the image: repeated reflection
        t, b, left, r = pads
        ref = np.pad(x.numpy(), ((0, 0), (0, 0), (t, b), (left, r)), mode=mode)
        assert np.array_equal(pad2d(x, t, b, left, r, NUMPY_MODES[mode]).numpy(), ref)


# ---- JPEG ------------------------------------------------------------------------------------


def pillow_jpeg(x, quality):
    out = []
    for im in to_uint8(x).numpy():
        buf = io.BytesIO()
        Image.fromarray(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue()))).astype(np.float64) / 255
        out.append(dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("quality", [20, 75, 95])
@pytest.mark.parametrize("hw", [(32, 32), (37, 45)])
def test_jpeg_matches_pillow(c, quality, hw):
    x = images(3, c, *hw, seed=quality)
    diff = np.abs(jpeg_roundtrip(x, quality).double().numpy() - pillow_jpeg(x, quality)) * 255  # grey levels
    # Same libjpeg defaults (baseline, 4:2:0, islow IDCT); measured: bit-identical (0 levels) with
    # torchvision 0.29 vs Pillow 13 (libjpeg-turbo both). Other libjpeg-turbo builds may round a
    # few IDCT/upsampling outputs differently by a level: allow 2 levels max, 0.25 on average.
    assert diff.max() <= 2 + 1e-3 and diff.mean() <= 0.25


def test_jpeg_quality_changes_output_and_is_idempotent_on_8bit_input():
    x = images(2, 3, 32, 32)
    lo, hi = jpeg_roundtrip(x, 10), jpeg_roundtrip(x, 95)
    assert (lo - x).abs().mean() > (hi - x).abs().mean() > 0
    levels = torch.arange(256)
    assert torch.equal(to_uint8(levels / 255).long(), levels)  # 8-bit images (k/255) quantize losslessly


def test_jpeg_codec_threads_keep_the_callers_thread_count():
    """The codec pool's workers run torch with one thread each; that setting must not reach the
    caller (in a fresh process it can: the next call would see 1 thread and remake the pool), the
    pool is reused, and the output does not depend on the number of workers."""
    import patchbench.defenses.jpeg as jpeg

    x = images(5, 3, 32, 32)
    one = jpeg_roundtrip(x, 75)
    torch.set_num_threads(2)
    try:
        two = jpeg_roundtrip(x, 75)
        pool = jpeg._POOL[0][1]
        assert torch.get_num_threads() == 2
        assert torch.equal(jpeg_roundtrip(x, 75), two) and jpeg._POOL[0][1] is pool  # the same pool again
    finally:
        torch.set_num_threads(1)
    assert torch.equal(one, two)


# ---- Gaussian and median ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(SCIPY_MODES))
@pytest.mark.parametrize("sigma,truncate", [(0.5, 4.0), (1.0, 4.0), (2.5, 2.0), (9.0, 4.0)])
def test_gaussian_matches_scipy(mode, sigma, truncate):
    x = images(2, 3, 23, 29, dtype=torch.float64)  # σ=9 → radius 36 > image: repeated reflections
    ref = ndi.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), truncate=truncate, mode=mode, cval=0.3)
    got = gaussian_filter(x, sigma, truncate, mode, 0.3).numpy()
    # float64 both, only the summation order differs: measured max 8e-16
    assert np.abs(got - ref).max() < 1e-12
    got32 = gaussian_filter(x.float(), sigma, truncate, mode, 0.3).double().numpy()
    assert np.abs(got32 - ref).max() < 1e-6  # float32 taps and sums (scipy sums in float64): measured 3.5e-7


@pytest.mark.parametrize("mode", list(SCIPY_MODES))
@pytest.mark.parametrize("size", [1, 3, 5])
def test_median_matches_scipy_exactly(mode, size):
    x = images(2, 3, 21, 26)
    ref = ndi.median_filter(x.numpy(), size=(1, 1, size, size), mode=mode, cval=0.3)
    assert np.array_equal(median_filter(x, size, mode, 0.3).numpy(), ref)  # a median is one of the inputs: exact


def test_median_network_is_exact_by_the_zero_one_principle():
    """A min/max network commutes with every monotone map, so it selects the median of all inputs
    iff it does for all 0/1 inputs: the 512 binary 3×3 windows prove median3x3 exact."""
    import itertools

    windows = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)))
    assert torch.equal(median3x3(windows.view(-1, 1, 3, 3)).flatten(), windows.median(1).values)
    ties = torch.randint(0, 3, (4, 2, 17, 19)).float() / 2  # tie-heavy images, as 8-bit data has
    ref = ndi.median_filter(ties.numpy(), size=(1, 1, 3, 3), mode="reflect")
    assert np.array_equal(median_filter(ties, 3).numpy(), ref)


@pytest.mark.parametrize("mode", list(SCIPY_MODES))
def test_median_chunked_in_cache_equals_the_whole_batch_network(mode, monkeypatch):
    """The no-gradient 3×3 path pads and filters a few planes at a time on reused buffers: with
    chunks of 2 planes (the last one short) it is bit-identical to the network on the whole padded
    batch (the gradient path) and to scipy."""
    import patchbench.defenses.median as med

    x = images(5, 3, 13, 17)  # 15 planes: 7 chunks of 2 and one of 1
    monkeypatch.setattr(med, "CHUNK", 2 * 15 * 19)
    got = median_filter(x, 3, mode, 0.3)
    y = pad2d(x, 1, 1, 1, 1, SCIPY_MODES[mode], 0.3).requires_grad_(True)
    assert torch.equal(got, median3x3(y).detach())
    assert np.array_equal(got.numpy(), ndi.median_filter(x.numpy(), size=(1, 1, 3, 3), mode=mode, cval=0.3))
    one = x[:1, :1, :2, :1]  # images of 2×1 pixels: every border row and column at once
    assert np.array_equal(median_filter(one, 3, mode, 0.3).numpy(), ndi.median_filter(one.numpy(), size=(1, 1, 3, 3), mode=mode, cval=0.3))


# ---- bilateral -------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("mode", list(NUMPY_MODES))
@pytest.mark.parametrize("kw", [{}, {"sigma_color": 0.1, "sigma_spatial": 2.0}, {"sigma_color": 0.05, "win_size": 7, "bins": 100}])
def test_bilateral_matches_skimage(c, mode, kw):
    x = images(2, c, 22, 25, dtype=torch.float64)
    ref = per_image(lambda im, ax: denoise_bilateral(im, mode=mode, channel_axis=ax, **kw), x)
    got = bilateral_filter(x, mode=mode, **kw).numpy()
    # compat="skimage" reproduces its look-up tables bin for bin; float64: measured max 7e-16
    assert np.abs(got - ref).max() < 1e-12
    ref32 = per_image(lambda im, ax: denoise_bilateral(im, mode=mode, channel_axis=ax, **kw), x.float())
    # float32 on both sides: a distance on a bin edge may land in the neighbour bin: measured 4e-6
    assert np.abs(bilateral_filter(x.float(), mode=mode, **kw).numpy() - ref32).max() < 1e-4


def naive_bilateral(x, win_size, sigma_color, sigma_spatial):
    """Textbook bilateral filter, loops over pixels and window, zero padding (float64)."""
    x = x.double().numpy()
    n, c, h, w = x.shape
    r = win_size // 2
    out = np.zeros_like(x)
    for b in range(n):
        xp = np.pad(x[b], ((0, 0), (r, r), (r, r)))
        sc = sigma_color if sigma_color is not None else x[b].std()
        for i in range(h):
            for j in range(w):
                num, den = np.zeros(c), 0.0
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        v = xp[:, i + r + di, j + r + dj]
                        wgt = np.exp(-(di * di + dj * dj) / (2 * sigma_spatial**2)) * np.exp(-((v - x[b, :, i, j]) ** 2).sum() / (2 * sc**2))
                        num, den = num + wgt * v, den + wgt
                out[b, :, i, j] = num / den
    return out


@pytest.mark.parametrize("c", [1, 3])
def test_bilateral_exact_matches_naive_loops(c):
    x = images(2, c, 16, 18, dtype=torch.float64)
    for win, sc, ss in [(5, None, 1.0), (3, 0.2, 0.8)]:
        got = bilateral_filter(x, win, sc, ss, compat="exact").numpy()
        assert np.abs(got - naive_bilateral(x, win, sc, ss)).max() < 1e-12  # same formula, float64: ~1e-16


def test_bilateral_skimage_spatial_table_is_off_centre():
    """The documented skimage quirk: an impulse is smeared asymmetrically (we follow it)."""
    x = torch.zeros(1, 1, 15, 15, dtype=torch.float64)
    x[0, 0, 7, 7] = 1.0
    ref = denoise_bilateral(x[0, 0].numpy(), sigma_color=1e6, sigma_spatial=1.0, win_size=5)
    got = bilateral_filter(x, 5, 1e6, 1.0)[0, 0].numpy()
    assert np.abs(got - ref).max() < 1e-12
    assert not np.allclose(got, got[::-1, ::-1])
    exact = bilateral_filter(x, 5, 1e6, 1.0, compat="exact")[0, 0].numpy()
    assert np.allclose(exact, exact[::-1, ::-1]) and np.allclose(exact, exact.T)


# ---- TVM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [{"weight": 0.1, "eps": 2e-4, "max_num_iter": 200},
                                {"weight": 0.3, "eps": 1e-6, "max_num_iter": 60}])
def test_tvm_matches_skimage(kw):
    x = images(3, 3, 30, 34, dtype=torch.float64)
    x[1] = 0.5 + 0.1 * x[1]  # a low-contrast image stops at another iteration than its batch mates
    ref = per_image(lambda im, ax: denoise_tv_chambolle(im, channel_axis=ax, **kw), x)
    got = tv_chambolle(x, kw["weight"], kw["eps"], kw["max_num_iter"]).numpy()
    assert np.abs(got - ref).max() < 1e-10  # same iterations and stopping test in float64: measured 3e-16
    ref32 = per_image(lambda im, ax: denoise_tv_chambolle(im, channel_axis=ax, **kw), x.float())
    got32 = tv_chambolle(x.float(), kw["weight"], kw["eps"], kw["max_num_iter"]).numpy()
    # float32 sums in another order; a stopping test that flips by one iteration moves u by
    # less than this near convergence: measured 1.2e-7
    assert np.abs(got32 - ref32).max() < 1e-4


def test_tvm_gray_matches_skimage():
    x = images(2, 1, 28, 28, dtype=torch.float64)
    ref = per_image(lambda im, ax: denoise_tv_chambolle(im, weight=0.2, channel_axis=ax), x)
    assert np.abs(tv_chambolle(x, 0.2).numpy() - ref).max() < 1e-10


@pytest.mark.slow  # compiles two kernels (float64, float32): ~15 s each with an empty inductor cache
def test_tvm_compiled_matches_skimage(monkeypatch):
    """``patchbench --compile``: the fused iteration, really compiled (a fallback to eager would warn),
    stops where skimage stops and returns its u."""
    from patchbench.defenses import compiling

    monkeypatch.setitem(compiling.SWITCH, "on", True)
    x = images(3, 3, 30, 34, dtype=torch.float64)
    x[1] = 0.5 + 0.1 * x[1]
    ref = per_image(lambda im, ax: denoise_tv_chambolle(im, channel_axis=ax, weight=0.1), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = tv_chambolle(x, 0.1).numpy()
        got32 = tv_chambolle(x.float(), 0.1).numpy()
    assert np.abs(got - ref).max() < 1e-10
    assert np.abs(got32 - ref).max() < 1e-4


# ---- DW --------------------------------------------------------------------------------------


def laplace_reference(x, mask):
    """Solve the discrete Laplace equation on the masked pixels exactly (scipy spsolve): for each
    masked pixel, deg·u - Σ masked neighbours u = Σ unmasked neighbours x (in-image neighbours)."""
    h, w = mask.shape
    pts = np.argwhere(mask)
    index = -np.ones((h, w), dtype=int)
    index[mask] = np.arange(len(pts))
    a = scipy.sparse.lil_matrix((len(pts), len(pts)))
    rhs = np.zeros((len(pts), x.shape[0]))
    for k, (i, j) in enumerate(pts):
        nbrs = [(i + di, j + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)) if 0 <= i + di < h and 0 <= j + dj < w]
        a[k, k] = len(nbrs)
        for p, q in nbrs:
            if mask[p, q]:
                a[k, index[p, q]] -= 1
            else:
                rhs[k] += x[:, p, q]
    u = x.copy()
    u[:, mask] = scipy.sparse.linalg.spsolve(a.tocsr(), rhs).T
    return u


def test_dw_inpainting_matches_sparse_solve():
    x = images(1, 3, 32, 32, dtype=torch.float64)
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:22, 9:27] = True  # an 18×18 hole
    mask[26:, :5] = True  # one touching two image borders (Neumann there)
    got = harmonic_inpaint(x, torch.from_numpy(mask)[None, None], iterations=300, omega=1.9)[0].numpy()
    ref = laplace_reference(x[0].numpy(), mask)
    # 300 red-black SOR sweeps converge to round-off on holes this size: measured 1e-14
    assert np.abs(got - ref).max() < 1e-8
    assert np.array_equal(got[:, ~mask], x[0].numpy()[:, ~mask])  # unmasked pixels untouched


def test_dw_inpainting_of_a_batch_iterates_only_the_masked_box():
    """Masks at different places per image (one a single interior square, one empty, one in the
    top-right corner): every image equals its own exact solve, and an image without a mask is
    returned unchanged."""
    x = images(3, 2, 30, 34, dtype=torch.float64)
    masks = np.zeros((3, 30, 34), dtype=bool)
    masks[0, 10:16, 12:20] = True
    masks[2, :6, -7:] = True
    got = harmonic_inpaint(x, torch.from_numpy(masks)[:, None], iterations=300, omega=1.9).numpy()
    for i in (0, 2):
        assert np.abs(got[i] - laplace_reference(x[i].numpy(), masks[i])).max() < 1e-8
    assert np.array_equal(got[1], x[1].numpy())
    assert torch.equal(harmonic_inpaint(x, torch.zeros(3, 1, 30, 34, dtype=torch.bool)), x)  # nothing masked


def test_dw_inpainting_of_holes_at_random_places_is_per_image():
    """A patch at a random place per image (the union of the boxes is most of the image): each
    image's own box is iterated, stacked at the largest box's size (moved inward at the borders),
    and every image equals itself inpainted alone bit for bit, and its exact solve."""
    gen = torch.Generator().manual_seed(5)
    x = images(7, 2, 31, 29, dtype=torch.float64)
    masks = torch.zeros(7, 1, 31, 29, dtype=torch.bool)
    for i, side in enumerate([4, 7, 1, 0, 9, 5, 3]):
        t, left = torch.randint(-3, 31 - side + 3, (2,), generator=gen).tolist()
        masks[i, 0, max(t, 0):t + side, max(left, 0):left + side] = True
    masks[2, 0, 0, 0] = masks[6, 0, -1, -1] = True  # corners: the window cannot be centred
    for iterations in (1, 4, 300):
        got = harmonic_inpaint(x, masks, iterations=iterations, omega=1.9)
        for i in range(7):
            assert torch.equal(got[i:i + 1], harmonic_inpaint(x[i:i + 1], masks[i:i + 1], iterations=iterations, omega=1.9))
    for i in (0, 1, 2, 4, 6):
        assert np.abs(got[i].numpy() - laplace_reference(x[i].numpy(), masks[i, 0].numpy())).max() < 1e-8
    assert torch.equal(got[3], x[3])  # no mask: unchanged


def test_dw_inpainting_with_the_optimal_factor_and_a_tolerance_stops_early_per_image():
    """DW's default solver (omega "auto", tol 1e-6): within 1e-5 of the exact solve, far fewer
    sweeps than the cap, and every image stops on its own test: bit for bit what it gives alone."""
    from patchbench.defenses.dw import sor_omega

    gen = torch.Generator().manual_seed(6)
    x = images(6, 2, 40, 36, dtype=torch.float64)
    masks = torch.zeros(6, 1, 40, 36, dtype=torch.bool)
    for i, side in enumerate([16, 3, 0, 12, 18, 1]):
        t, left = torch.randint(-2, 36 - side + 2, (2,), generator=gen).tolist()
        masks[i, 0, max(t, 0):t + side, max(left, 0):left + side] = True
    masks[3, 0, 30:34, 2:30] = True  # two holes, one box
    got = harmonic_inpaint(x, masks, 300, "auto", 1e-6)
    for i in range(6):
        assert torch.equal(got[i:i + 1], harmonic_inpaint(x[i:i + 1], masks[i:i + 1], 300, "auto", 1e-6))
        if masks[i].any():
            assert np.abs(got[i].numpy() - laplace_reference(x[i].numpy(), masks[i, 0].numpy())).max() < 1e-5
    assert torch.equal(got[2], x[2])
    assert torch.equal(harmonic_inpaint(x, masks, 64, "auto", 1e-6), got)  # all stopped within 64 sweeps
    assert not torch.equal(harmonic_inpaint(x, masks, 64, 1.9, 1e-6), harmonic_inpaint(x, masks, 300, 1.9, 1e-6))
    one = torch.tensor([1.0], dtype=torch.float64)
    assert float(sor_omega(one, one)) == pytest.approx(1.0)  # one pixel: Gauss-Seidel solves it in a sweep
    assert 1.6 < float(sor_omega(16 * one, 16 * one)) < 1.75


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_dw_morphology_matches_scipy(iterations):
    gen = torch.Generator().manual_seed(iterations)
    m = torch.rand(3, 1, 24, 27, generator=gen) > 0.35
    m[0, 0, 5:15, 5:15] = True
    square = np.ones((3, 3), dtype=bool)
    for b in range(3):
        ref_e = ndi.binary_erosion(m[b, 0].numpy(), square, iterations=iterations)  # border_value=0
        ref_d = ndi.binary_dilation(m[b, 0].numpy(), square, iterations=iterations)
        assert np.array_equal(erode(m, iterations, border="zero")[b, 0].numpy(), ref_e)  # boolean: exact
        assert np.array_equal(dilate(m, iterations)[b, 0].numpy(), ref_d)


def test_dw_binarize_rules():
    m = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    flat = m.flatten(1).numpy()
    t = flat.mean(1) + 2 * flat.std(1)
    assert np.array_equal(binarize(m, "std", 2.0).flatten(1).numpy(), flat > t[:, None])
    q = np.quantile(flat, 0.9, axis=1)
    assert np.array_equal(binarize(m, "quantile", 0.9).flatten(1).numpy(), flat > q[:, None])


def test_dw_masks_the_salient_square_and_inpaints_it():
    x = images(2, 3, 32, 32)
    model = Linear(3, 32, 32).eval()
    d = DigitalWatermarking()
    maps = d.maps(x, model)
    t, b, left, r = model.square
    mask = maps["mask"]
    assert mask[:, :, t + 1:b - 1, left + 1:r - 1].all()  # the core of the salient square
    assert mask.float().mean() < 0.35  # and not the whole image
    keep = ~mask.expand_as(x)
    assert torch.equal(maps["out"][keep], x[keep])
    assert not torch.equal(maps["out"], x)
    assert d.apply(x, maps, None) is maps["out"]
    with pytest.raises(PatchbenchError, match="dw needs the classifier: its saliency map"):
        d.maps(x, None)


# ---- every defense ---------------------------------------------------------------------------

FAST = {
    "jpeg": {"quality": 60},
    "gaussian": {"sigma": 1.5},
    "median": {"size": 3},
    "bilateral": {"sigma_color": 0.1},
    "tvm": {"weight": 0.1, "max_iter": 40},
    "dw": {"inpaint_iter": 60},
}


@pytest.mark.parametrize("name", list(FAST))
@pytest.mark.parametrize("c", [1, 3])
def test_batch_invariance_range_shape_dtype(name, c):
    d = build_defense(name, FAST[name])
    assert type(d) is DEFENSES[name] and not d.uses_lambda
    assert d.params() == {**type(d)().params(), **FAST[name]}
    for dtype in (torch.float32, torch.float64):
        x = images(4, c, 36, 40, seed=c, dtype=dtype)
        model = Linear(c, 36, 40).to(dtype).eval()
        together = d(x, None, model)
        alone = torch.cat([d(x[i:i + 1], None, model) for i in range(len(x))])
        # all measured bit-identical; DW's classifier may use batch-size dependent BLAS kernels
        # (saliency equal only up to rounding), hence a small tolerance for it
        torch.testing.assert_close(together, alone, atol=1e-6 if name == "dw" else 0, rtol=0)
        assert together.shape == x.shape and together.dtype == x.dtype and together.device == x.device
        assert together.min() >= 0 and together.max() <= 1
        assert not torch.equal(together, x)


@pytest.mark.parametrize("name,bad", [
    ("jpeg", {"quality": 0}), ("jpeg", {"quality": 101}), ("jpeg", {"quality": 7.5}), ("jpeg", {"backend": "gpu"}),
    ("gaussian", {"sigma": -1}), ("gaussian", {"truncate": 0}), ("gaussian", {"mode": "symmetric"}),
    ("median", {"size": 4}), ("median", {"size": 0}), ("median", {"mode": "edge"}), ("median", {"cval": "x"}),
    ("bilateral", {"sigma_color": 0}), ("bilateral", {"sigma_spatial": -1}), ("bilateral", {"win_size": 4}),
    ("bilateral", {"bins": 0}), ("bilateral", {"mode": "nearest"}), ("bilateral", {"compat": "opencv"}),
    ("tvm", {"weight": 0}), ("tvm", {"max_iter": 0}), ("tvm", {"eps": -1}),
    ("dw", {"top_k": 0}), ("dw", {"saliency": "gradcam"}), ("dw", {"rule": "otsu"}), ("dw", {"rule": "quantile", "threshold": 1.5}),
    ("dw", {"erosions": -1}), ("dw", {"dilations": 1.5}), ("dw", {"inpaint_iter": -3}), ("dw", {"omega": 2.0}), ("dw", {"omega": "fast"}), ("dw", {"inpaint_tol": -1}),
    ("tvm", {"bogus": 1}),
])
def test_bad_parameters_raise(name, bad):
    with pytest.raises(PatchbenchError, match=name if "bogus" not in bad else "bogus"):
        build_defense(name, bad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device; the same code paths run on CPU in the tests above")
def test_on_cuda_matches_cpu():
    x = images(4, 3, 48, 48)
    model = Linear(3, 48, 48).eval()
    for name, params in FAST.items():
        d = build_defense(name, params)
        cpu = d.maps(x, model)
        gpu = {k: v.cpu() for k, v in d.maps(x.cuda(), model.cuda()).items()}
        if name == "dw":  # cuBLAS rounding may move a saliency value across the threshold
            assert (gpu["mask"] != cpu["mask"]).float().mean() < 0.01
            continue
        # nvJPEG's codec differs from libjpeg by a few grey levels (bound not measured: no GPU here)
        atol = 8 / 255 if name == "jpeg" else 1e-5
        torch.testing.assert_close(gpu["out"], cpu["out"], atol=atol, rtol=0)
