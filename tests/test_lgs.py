"""LGS against a deliberately naive per-pixel / per-window Python implementation."""

import itertools
import re

import pytest
import torch

from patchbench.defenses import build_defense
from patchbench.defenses.lgs import LGS, gradient_map


def naive_gradient_map(x, window, overlap, threshold, window_average="kept"):
    """Explicit loops over pixels and windows, in float64, per image. ``"kept"`` follows the
    notebook's ``fold(x * mask) / fold(ones * mask)``: the sum of gx over the kept windows
    covering a pixel divided by their number (0/0 -> 0, its ``r[r != r] = 0``); ``"all"``
    divides the kept sum by all covering windows."""
    x = x.double()
    n, c, h, w = x.shape
    sx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    out = torch.zeros_like(x)
    for b in range(n):
        g = torch.zeros(c, h, w, dtype=torch.float64)
        for ch, i, j in itertools.product(range(c), range(h), range(w)):
            gx = gy = 0.0
            for di, dj in itertools.product(range(3), range(3)):
                ii, jj = i + di - 1, j + dj - 1
                v = float(x[b, ch, ii, jj]) if 0 <= ii < h and 0 <= jj < w else 0.0  # zero padding
                gx += sx[di][dj] * v
                gy += sx[dj][di] * v
            g[ch, i, j] = (gx * gx + gy * gy) ** 0.5
        lo, hi = g.min(), g.max()
        g = (g - lo) / (hi - lo) if hi > lo else torch.zeros_like(g)
        stride = window - overlap

        def pad(length):
            left = length % stride
            total = (overlap if left <= overlap else window) - left
            return total // 2, total - total // 2

        (pt, pb), (pl, pr) = pad(h), pad(w)
        hp, wp = h + pt + pb, w + pl + pr
        kept = torch.zeros(hp, wp, dtype=torch.float64)
        total = torch.zeros(hp, wp, dtype=torch.float64)
        kept_sum = torch.zeros(c, hp, wp, dtype=torch.float64)  # fold(patches * mask)
        gp = torch.zeros(c, hp, wp, dtype=torch.float64)
        gp[:, pt:pt + h, pl:pl + w] = g
        for top in range(0, hp - window + 1, stride):
            for left in range(0, wp - window + 1, stride):
                s = 0.0
                for ch, i, j in itertools.product(range(c), range(top, top + window), range(left, left + window)):
                    ii, jj = i - pt, j - pl
                    if 0 <= ii < h and 0 <= jj < w:
                        s += float(g[ch, ii, jj])
                mean = s / (c * window * window)
                total[top:top + window, left:left + window] += 1
                if mean >= threshold:
                    kept[top:top + window, left:left + window] += 1
                    kept_sum[:, top:top + window, left:left + window] += gp[:, top:top + window, left:left + window]
        kept, total = kept[pt:pt + h, pl:pl + w], total[pt:pt + h, pl:pl + w]
        kept_sum = kept_sum[:, pt:pt + h, pl:pl + w]
        if window_average == "kept":
            r = kept_sum / kept  # fold(patches * mask) / fold(ones * mask)
            out[b] = torch.where(torch.isnan(r), torch.zeros_like(r), r)  # r[r != r] = 0
        else:
            out[b] = kept_sum / total
    return out


def structured_images(n, c, h, w, seed=0, square=8):
    """Smooth background plus a noisy square: some windows are kept, some are not."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = (0.3 + 0.4 * yy * xx).expand(n, c, h, w).clone()
    x += 0.02 * torch.rand(n, c, h, w, generator=gen)
    for b in range(n):
        t = int(torch.randint(0, h - square + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - square + 1, (1,), generator=gen))
        x[b, :, t:t + square, left:left + square] = torch.rand(c, square, square, generator=gen)
    return x.clamp(0, 1)


@pytest.mark.parametrize("shape,window,overlap,threshold,avg", [
    ((2, 3, 31, 31), 15, 5, 0.2, "kept"),
    ((2, 1, 24, 29), 5, 2, 0.2, "kept"),
    ((1, 3, 26, 23), 7, 3, 0.25, "kept"),
    ((2, 2, 18, 18), 4, 0, 0.15, "kept"),
    ((2, 1, 24, 29), 5, 2, 0.2, "all"),
    ((2, 3, 31, 31), 15, 5, 0.2, "all"),
])
def test_matches_naive_loops(shape, window, overlap, threshold, avg):
    x = structured_images(*shape, square=max(8, window))
    fast = gradient_map(x, window, overlap, threshold, avg)
    slow = naive_gradient_map(x, window, overlap, threshold, avg)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast.double(), slow, atol=1e-5, rtol=0)
    zero_frac = float((slow == 0).double().mean())
    assert 0.05 < zero_frac < 0.95, "test images should keep some windows and drop others"


def test_batch_invariance():
    x = structured_images(5, 3, 40, 40, seed=3)
    d = LGS(window=15, overlap=5, threshold=0.2)
    together = d(x, 2.3)
    alone = torch.cat([d(x[i:i + 1], 2.3) for i in range(len(x))])
    torch.testing.assert_close(together, alone, atol=0, rtol=0)


def test_lambda_zero_is_identity():
    x = structured_images(3, 3, 40, 40)
    for space in ("pixel", "normalized"):
        d = LGS(space=space, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
        assert torch.equal(d(x, 0.0), x) if space == "pixel" else torch.allclose(d(x, 0.0), x, atol=1e-6)


@pytest.mark.parametrize("size", [40, 64, 400])
@pytest.mark.parametrize("lam", [0.5, 2.3, 10.0, 1000.0])
def test_constant_image_unchanged(size, lam):
    d = LGS(window=15, overlap=5, threshold=0.2)
    for value in (0.0, 0.37, 1.0):
        x = torch.full((2, 3, size, size), value)
        assert torch.equal(d(x, lam), x)


def test_apply_formula_and_range():
    x = structured_images(2, 3, 32, 32)
    d = LGS(window=8, overlap=2, threshold=0.1)
    maps = d.maps(x)
    g = maps["g"]
    assert g.min() >= 0 and g.max() <= 1 and g.max() > 0
    y = d.apply(x, maps, 2.3)
    torch.testing.assert_close(y, x * (1 - 2.3 * g).clamp(0, 1))
    assert y.min() >= 0 and y.max() <= 1


def test_normalized_space_pulls_toward_mean():
    x = structured_images(2, 3, 32, 32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    d = LGS(window=8, overlap=2, threshold=0.1, space="normalized", mean=mean, std=std)
    maps = d.maps(x)
    xn = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(maps["g"], gradient_map(xn, 8, 2, 0.1))
    y = d.apply(x, maps, 1e6)  # fully smoothed pixels become the mean colour
    m = torch.tensor(mean).view(1, 3, 1, 1).expand_as(x)
    hit = maps["g"] > 0
    torch.testing.assert_close(y[hit], m[hit])
    assert y.min() >= 0 and y.max() <= 1


def test_builder_validates_parameters():
    from patchbench.errors import PatchbenchError

    for bad, says in (({"window": 1}, "lgs window must be an integer >= 2, got 1"),
                      ({"overlap": 15}, "lgs overlap must be an integer in 0..window-1, got 15"),
                      ({"threshold": 2}, "lgs threshold must be in [0, 1], got 2"),
                      ({"space": "hsv"}, "lgs space must be pixel or normalized, got 'hsv'"),
                      ({"bogus": 1}, "unknown parameter 'bogus' for defense lgs")):
        with pytest.raises(PatchbenchError, match=re.escape(says)):
            build_defense("lgs", bad)
    with pytest.raises(PatchbenchError, match=re.escape("lgs space 'normalized' needs the model's mean/std")):
        build_defense("lgs", {"space": "normalized"})  # no model -> no mean/std
    with pytest.raises(PatchbenchError, match=re.escape("unknown defense 'nope'")):
        build_defense("nope", {})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device; the same code path runs on CPU in the tests above")
def test_lgs_on_cuda_matches_cpu():
    x = structured_images(4, 3, 64, 64, seed=5, square=15)
    d = LGS(window=15, overlap=5, threshold=0.2)
    torch.testing.assert_close(d(x.cuda(), 2.3).cpu(), d(x, 2.3), atol=1e-5, rtol=0)
