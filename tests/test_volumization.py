"""Volumization (BMVC 2023 Sec. 4.1) and the Table 1 metrics against independent references:
scikit-image, scipy, numpy histograms and slow per-patch loops written here."""

import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.measure import shannon_entropy
from skimage.metrics import mean_squared_error, normalized_mutual_information, peak_signal_noise_ratio

from patchbench.errors import PatchbenchError
from patchbench.volumization import (METRICS, Volumizer, histogram, merge_patches, rank, reference_items, scores,
                                     split_patches)

# ---------------------------------------------------------------------------------------------
# helpers: items and slow references


def eight_bit(shape, gen, levels=256):
    """Float32 items k/255 (8-bit images), k drawn among ``levels`` evenly spaced 8-bit values."""
    step = 255 // (levels - 1)
    return (torch.randint(0, levels, shape, generator=gen) * step).float() / 255


def structured_items():
    """(4, 3, 6, 5): constant, two halves, a ramp, a checkerboard."""
    items = torch.zeros(4, 3, 6, 5)
    items[0] = 0.4
    items[1, :, :3] = 1.0
    items[2] = torch.linspace(0, 1, 30).reshape(6, 5)
    items[3] = ((torch.arange(6)[:, None] + torch.arange(5)[None]) % 2).float() * 0.75
    return items


def as_u8(item: torch.Tensor) -> np.ndarray:
    return np.round(item.double().numpy() * 255).astype(np.uint8)


def np_hist(a: np.ndarray, bins: int) -> np.ndarray:
    return np.histogram(a.ravel().astype(np.float64), bins=bins, range=(0.0, 1.0))[0]


def np_entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def np_joint_entropy(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    h = np.histogram2d(a.ravel().astype(np.float64), b.ravel().astype(np.float64), bins=bins, range=[[0, 1], [0, 1]])[0]
    return np_entropy(h.ravel())


def flat_items(t: torch.Tensor) -> list[torch.Tensor]:
    return list(t.reshape(-1, *t.shape[-3:]))


# ---------------------------------------------------------------------------------------------
# split / merge (Eq. 3-4)


@pytest.mark.parametrize("shape,patch", [((2, 3, 8, 8), 4), ((2, 1, 6, 10), (3, 5)), ((1, 3, 12, 8), (4, 2)), ((3, 2, 5, 5), 5)])
def test_split_merge_round_trip_and_layout(shape, patch):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    patches, grid = split_patches(x, patch)
    gh, gw = shape[2] // ph, shape[3] // pw
    assert grid == (gh, gw) and patches.shape == (shape[0], gh * gw, shape[1], ph, pw)
    for b in range(shape[0]):  # slow reference: patch n is grid cell (n // gw, n % gw)
        for n in range(gh * gw):
            r, c = divmod(n, gw)
            assert torch.equal(patches[b, n], x[b, :, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw])
    assert torch.equal(merge_patches(patches, grid), x)
    assert torch.equal(merge_patches(patches, grid, image_size=shape[2:]), x)


@pytest.mark.parametrize("pad,np_mode", [("zero", "constant"), ("reflect", "reflect"), ("replicate", "edge")])
@pytest.mark.parametrize("shape,patch", [((2, 3, 7, 9), 4), ((1, 2, 10, 6), (4, 5))])
def test_padding_modes_against_numpy(pad, np_mode, shape, patch):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    patches, grid = split_patches(x, patch, pad=pad)
    gh, gw = -(-shape[2] // ph), -(-shape[3] // pw)
    assert grid == (gh, gw) and patches.shape[1] == gh * gw
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, gh * ph - shape[2]), (0, gw * pw - shape[3])), mode=np_mode)
    np.testing.assert_array_equal(merge_patches(patches, grid).numpy(), padded)
    assert torch.equal(merge_patches(patches, grid, image_size=shape[2:]), x)


def test_split_refuses_non_dividing_size_and_bad_parameters():
    x = torch.rand(1, 3, 10, 12)
    with pytest.raises(PatchbenchError, match=r"10×12 is not a multiple of the patch size 4×4.*zero.*reflect.*replicate"):
        split_patches(x, 4)
    with pytest.raises(PatchbenchError, match="pad must be one of"):
        split_patches(x, 4, pad="wrap")
    with pytest.raises(PatchbenchError, match="patch must be"):
        split_patches(x, 0)
    with pytest.raises(PatchbenchError, match="reflect"):
        split_patches(torch.rand(1, 1, 3, 3), 8, pad="reflect")
    with pytest.raises(PatchbenchError, match="expects images"):
        split_patches(torch.rand(3, 8, 8), 4)
    patches, grid = split_patches(torch.rand(1, 3, 8, 8), 4)
    with pytest.raises(PatchbenchError, match="do not fill"):
        merge_patches(patches, (3, 2))


# ---------------------------------------------------------------------------------------------
# histograms and metrics


def test_histogram_quantization_against_numpy():
    gen = torch.Generator().manual_seed(2)
    items = torch.rand(2, 3, 2, 4, 5, generator=gen)
    items[0, 0, 0, 0, :3] = torch.tensor([0.0, 1.0, 1.0])  # x = 1 goes to the top bin
    for bins in (256, 16, 8):  # powers of two: x·bins is exact in float32, so numpy's edges agree
        h = histogram(items, bins, normalize=False)
        assert h.shape == (2, 3, bins)
        for item, hist in zip(flat_items(items), h.reshape(-1, bins)):
            np.testing.assert_array_equal(hist.numpy(), np_hist(item.numpy(), bins))
        np.testing.assert_allclose(histogram(items, bins).sum(-1).numpy(), 1.0)


@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (2, 3, 1, 4, 7), (4, 1, 16, 16)])
def test_entropy_matches_skimage_on_8bit_items(shape):
    gen = torch.Generator().manual_seed(3)
    for levels in (256, 16, 2):
        items = eight_bit(shape, gen, levels)
        got = scores(items, "entropy", bins=256)
        assert got.shape == shape[:-3]
        for item, h in zip(flat_items(items), got.reshape(-1)):
            assert float(h) == pytest.approx(shannon_entropy(as_u8(item), base=2), abs=1e-9)
    items = structured_items()
    for item, h in zip(items, scores(items, "entropy")):
        assert float(h) == pytest.approx(shannon_entropy(as_u8(item), base=2), abs=1e-9)
    assert float(scores(items, "entropy")[0]) == 0.0


def test_psnr_mse_max_norm_against_skimage_and_numpy():
    gen = torch.Generator().manual_seed(4)
    items = torch.rand(2, 3, 3, 6, 5, generator=gen)
    ref = torch.rand(3, 6, 5, generator=gen)
    p, m, mx = (scores(items, k, reference=ref) for k in ("psnr", "mse", "max_norm"))
    assert p.shape == m.shape == mx.shape == (2, 3)
    for item, pi, mi, xi in zip(flat_items(items), p.reshape(-1), m.reshape(-1), mx.reshape(-1)):
        a, r = item.double().numpy(), ref.double().numpy()  # skimage in float64 (it keeps float32 otherwise)
        assert float(pi) == pytest.approx(peak_signal_noise_ratio(r, a, data_range=1), rel=1e-9)
        assert float(mi) == pytest.approx(mean_squared_error(r, a), rel=1e-9)
        assert float(xi) == pytest.approx(float(np.abs(a - r).max()), rel=1e-7)
    same = torch.stack([ref, ref])  # identical items: PSNR +inf, like skimage's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert peak_signal_noise_ratio(ref.numpy(), ref.numpy(), data_range=1) == np.inf
    assert torch.isinf(scores(same, "psnr", reference=ref)).all()
    assert (scores(same, "mse", reference=ref) == 0).all() and (scores(same, "max_norm", reference=ref) == 0).all()


def correlated_pairs(gen, shape, levels):
    a = eight_bit(shape, gen, levels)
    noise = eight_bit(shape, gen, levels)
    keep = torch.rand(shape, generator=gen) < 0.6
    return a, torch.where(keep, a, noise)


@pytest.mark.parametrize("bins", [256, 16])
def test_joint_entropy_and_mi_against_numpy_histogram2d(bins):
    gen = torch.Generator().manual_seed(5)
    for shape, levels in [((6, 3, 4, 4), 8), ((2, 3, 1, 8, 6), 32), ((3, 1, 5, 7), 256)]:
        a, b = correlated_pairs(gen, shape, levels)
        je = METRICS["joint_entropy"](a, b, bins=bins)
        mi = METRICS["mi"](a, b, bins=bins)
        assert je.shape == mi.shape == shape[:-3]
        for x1, x2, j, m in zip(flat_items(a), flat_items(b), je.reshape(-1), mi.reshape(-1)):
            n1, n2 = x1.numpy(), x2.numpy()
            ref_je = np_joint_entropy(n1, n2, bins)
            ref_mi = np_entropy(np_hist(n1, bins)) + np_entropy(np_hist(n2, bins)) - ref_je
            assert float(j) == pytest.approx(ref_je, abs=1e-9)
            assert float(m) == pytest.approx(ref_mi, abs=1e-9)
        for chunk in (1, 4):  # chunking changes memory, not values
            assert torch.allclose(METRICS["joint_entropy"](a, b, bins=bins, chunk=chunk), je, rtol=0, atol=1e-12)


def test_mi_relation_to_skimage_normalized_mutual_information():
    """skimage: NMI = (H1 + H2) / H12, so MI = H1 + H2 - H12 = H12 (NMI - 1). On 8-bit items every
    value keeps its own bin in both histograms, so the entropies agree."""
    gen = torch.Generator().manual_seed(6)
    a, b = correlated_pairs(gen, (6, 3, 8, 8), 16)
    mi = METRICS["mi"](a, b, bins=256)
    je = METRICS["joint_entropy"](a, b, bins=256)
    for x1, x2, m, j in zip(a, b, mi, je):
        nmi = normalized_mutual_information(as_u8(x1), as_u8(x2), bins=256)
        assert float(m) == pytest.approx(float(j) * (nmi - 1), abs=1e-9)
    assert torch.allclose(METRICS["mi"](a, a), scores(a, "entropy"), atol=1e-9)  # MI(x, x) = H(x)


@pytest.mark.parametrize("eps", [1e-10, 1e-3])
def test_kl_against_scipy(eps):
    gen = torch.Generator().manual_seed(7)
    for bins in (256, 8):
        x1 = eight_bit((4, 3, 5, 5), gen, 8)
        x2 = eight_bit((4, 3, 5, 5), gen, 16)
        kl = METRICS["kl"](x1, x2, bins=bins, eps=eps)
        for a, b, k in zip(x1, x2, kl):
            # scipy normalizes p + eps to sum 1: the smoothing (p + eps) / (1 + bins·eps)
            p, q = np_hist(a.numpy(), bins) / a.numel() + eps, np_hist(b.numpy(), bins) / b.numel() + eps
            assert float(k) == pytest.approx(scipy.stats.entropy(p, q, base=2), rel=1e-9, abs=1e-12)
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)  # disjoint supports
    assert torch.isinf(METRICS["kl"](a, b, bins=4, eps=0)).all()
    assert scipy.stats.entropy([1, 0, 0, 0], [0, 0, 0, 1]) == np.inf


def test_distance_reference_is_lowest_entropy_item_per_set():
    gen = torch.Generator().manual_seed(8)
    items = eight_bit((2, 6, 1, 4, 4), gen, 256)
    items[0, 2] = 0.25  # entropy 0 at indices 2 and 4 of image 0: the first wins
    items[0, 4] = 0.75
    items[1, 5] = 0.5  # image 1: only index 5
    ref = reference_items(items)
    assert torch.equal(ref[0, 0], items[0, 2]) and torch.equal(ref[1, 0], items[1, 5])
    got = scores(items, "mse")
    for b, r in ((0, 2), (1, 5)):
        for n in range(6):
            assert float(got[b, n]) == pytest.approx(mean_squared_error(items[b, r].double().numpy(), items[b, n].double().numpy()),
                                                     rel=1e-9)
    # a given reference: one for all sets (C, h, w) or one per set (B, C, h, w)
    one = torch.rand(1, 4, 4, generator=gen)
    per = torch.rand(2, 1, 4, 4, generator=gen)
    assert torch.allclose(scores(items, "max_norm", reference=one), (items - one).abs().amax((-3, -2, -1)).double())
    assert torch.allclose(scores(items, "max_norm", reference=per), (items - per[:, None]).abs().amax((-3, -2, -1)).double())
    with pytest.raises(PatchbenchError, match="reference must be"):
        scores(items, "mse", reference=torch.rand(3, 4, 4))
    with pytest.raises(PatchbenchError, match="reference must be"):
        scores(items, "mse", reference="first")


def test_unknown_metric_and_order_list_the_known_ones():
    items = torch.rand(2, 1, 4, 4)
    with pytest.raises(PatchbenchError, match="entropy, mi, kl, psnr, max_norm, joint_entropy, mse"):
        scores(items, "ssim")
    with pytest.raises(PatchbenchError, match="ascending, descending"):
        rank(torch.rand(3), "random")
    with pytest.raises(PatchbenchError, match="bins"):
        scores(items, "entropy", bins=1)


def test_rank_is_stable_against_python_sorted():
    gen = torch.Generator().manual_seed(9)
    s = torch.randint(0, 4, (5, 12), generator=gen).double()
    s[0, 3] = float("inf")
    for order in ("ascending", "descending"):
        got = rank(s, order)
        for row, perm in zip(s.tolist(), got.tolist()):
            key = (lambda i: row[i]) if order == "ascending" else (lambda i: -row[i])
            assert perm == sorted(range(len(row)), key=key)  # Python's sort is stable
    assert rank(torch.tensor([1.0, 0.0, 1.0, 0.0])).tolist() == [1, 3, 0, 2]
    assert rank(torch.tensor([1.0, 0.0, 1.0, 0.0]), "descending").tolist() == [0, 2, 1, 3]


# ---------------------------------------------------------------------------------------------
# the volumizer


def test_volumizer_orders_patches_by_entropy_and_inverts_exactly():
    gen = torch.Generator().manual_seed(10)
    x = torch.zeros(2, 3, 12, 16)
    for b in range(2):  # patches with 1..12 levels: distinct entropies
        for n, levels in enumerate(torch.randperm(12, generator=gen).tolist()):
            r, c = divmod(n, 4)
            x[b, :, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] = eight_bit((3, 4, 4), gen, levels + 2)
    for order in ("ascending", "descending"):
        v = Volumizer(patch=4, order=order)
        volume, perm, grid = v.volumize(x)
        assert volume.shape == (2, 3, 12, 4, 4) and grid == (3, 4)
        assert torch.equal(v(x), volume) and torch.equal(v.order_of(x), perm)
        for b in range(2):
            h = [shannon_entropy(as_u8(volume[b, :, k]), base=2) for k in range(12)]
            assert h == sorted(h, reverse=order == "descending")
            for k, n in enumerate(perm[b].tolist()):  # depth k holds grid patch n
                r, c = divmod(n, 4)
                assert torch.equal(volume[b, :, k], x[b, :, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4])
        assert torch.equal(Volumizer.invert(volume, perm, grid, x.shape[-2:]), x)


@pytest.mark.parametrize("metric", list(METRICS))
def test_volumizer_every_metric_padded_round_trip(metric):
    x = torch.rand(2, 3, 10, 7, generator=torch.Generator().manual_seed(11))
    v = Volumizer(patch=(4, 3), metric=metric, bins=16, pad="replicate")
    volume, perm, grid = v.volumize(x)
    assert volume.shape == (2, 3, 9, 4, 3)
    assert sorted(perm[0].tolist()) == list(range(9))
    assert torch.equal(v.invert(volume, perm, grid, (10, 7)), x)
    assert v.params()["metric"] == metric and v.params()["patch"] == [4, 3]


def test_volumizer_gradient_is_the_gather():
    gen = torch.Generator().manual_seed(12)
    x = torch.rand(2, 2, 8, 12, generator=gen, dtype=torch.float64).requires_grad_(True)
    v = Volumizer(patch=4, metric="kl", bins=8)
    volume, perm, _ = v.volumize(x)
    w = torch.randn(volume.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((volume * w).sum(), x)
    expected = torch.zeros_like(x)
    for b in range(2):  # slow reference: the weight of depth k goes back to grid patch perm[b, k]
        for k, n in enumerate(perm[b].tolist()):
            r, c = divmod(n, 3)
            expected[b, :, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] = w[b, :, k]
    assert torch.equal(grad, expected)


def test_volumizer_given_reference_and_bad_parameters():
    ref = torch.full((1, 4, 4), 0.5)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(13))
    v = Volumizer(patch=4, metric="mse", reference=ref)
    patches, _ = split_patches(x, 4)
    d = [mean_squared_error(ref.double().numpy(), p.double().numpy()) for p in patches[0]]
    assert v.order_of(x)[0].tolist() == sorted(range(4), key=lambda i: d[i])
    assert v.params()["reference"] == "tensor(1, 4, 4)"
    for kwargs, msg in [({"metric": "nope"}, "known: entropy"), ({"order": "up"}, "known: ascending"),
                        ({"pad": "wrap"}, "pad must be"), ({"reference": torch.rand(1, 3, 3)}, "reference must be"),
                        ({"bins": 0}, "bins")]:
        with pytest.raises(PatchbenchError, match=msg):
            Volumizer(patch=4, **kwargs)
