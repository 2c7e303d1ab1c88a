"""Foolbox 2's N-pixel family (SinglePixelAttack, MultiplePixelsAttack, LocalSearchAttack), batched,
against slow per-image references written from the published algorithm (Foolbox 2.x
``attacks/localsearch.py``; Narodytska & Kasiviswanathan 2017): the same random draws, one image
and one candidate at a time, as Foolbox's loops do, and identical outputs.

The model is a float64 linear map written as a product and a per-row sum, so a row's logits do not
depend on the batch it is in (the batched attacks evaluate many candidates at once, the references
one by one); any difference is then the attack's, not the arithmetic's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from patchbench.attacks import ATTACKS
from patchbench.attacks.local_search import LocalSearch
from patchbench.attacks.multiple_pixels import MultiplePixels
from patchbench.attacks.single_pixel import SinglePixel
from patchbench.errors import PatchbenchError


class RowLinear(nn.Module):
    def __init__(self, c=3, h=8, w=8, k=4, seed=0, scale=3.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(k, c, h, w, generator=g, dtype=torch.float64) * scale)
        self.bias = nn.Parameter(torch.randn(k, generator=g, dtype=torch.float64))

    def forward(self, x):
        return (x[:, None] * self.weight).flatten(2).sum(2) + self.bias


def data(n=12, c=3, size=8, seed=1, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    model = RowLinear(c, size, size, scale=scale)
    x = torch.rand(n, c, size, size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 4  # two images misclassified from the start: returned unchanged
    return model, x, y


def wrong(model, img, y) -> bool:
    with torch.no_grad():
        return bool(model(img[None]).argmax(1).item() != y)


# ---- the references: one image, one candidate at a time


def ref_single_pixel(model, x, y, max_pixels, region, gen):
    top, left, h, w = region
    order = torch.rand(len(x), h * w, generator=gen).argsort(1)  # the attack's one draw
    out = []
    for i in range(len(x)):
        result = x[i]
        if not wrong(model, x[i], y[i]):
            for pixel in order[i, :max_pixels].tolist():
                row, col = top + pixel // w, left + pixel % w
                found = None
                for value in (0.0, 1.0):  # min_, max_
                    perturbed = x[i].clone()
                    perturbed[:, row, col] = value
                    if wrong(model, perturbed, y[i]):
                        found = perturbed
                        break
                if found is not None:
                    result = found
                    break
        out.append(result)
    return torch.stack(out)


def ref_multiple_pixels(model, x, y, num_pixels, iterations, region, gen):
    top, left, h, w = region
    orders = torch.rand(len(x), iterations, h * w, generator=gen).argsort(2)
    coins = torch.randint(0, 2, (len(x), iterations, num_pixels), generator=gen)
    out = []
    for i in range(len(x)):
        result = x[i]
        if not wrong(model, x[i], y[i]):
            for it in range(iterations):
                perturbed, found = x[i].clone(), False
                for j, pixel in enumerate(orders[i, it, :num_pixels].tolist()):
                    value = 0.0 if coins[i, it, j] == 1 else 1.0
                    perturbed[:, top + pixel // w, left + pixel % w] = value
                    if wrong(model, perturbed, y[i]):
                        found = True
                        break
                if found:
                    result = perturbed
                    break
        out.append(result)
    return torch.stack(out)


def ref_local_search(model, x, y, r, p, d, t, rounds, region, gen):
    top, left, h, w = region
    start = torch.rand(len(x), h * w, generator=gen).argsort(1)[:, : min(int(0.1 * h * w), 128)]
    keys = [torch.rand(len(x), h * w, generator=gen) for _ in range(rounds)]
    out = []
    for i in range(len(x)):
        result = x[i]
        if wrong(model, x[i], y[i]):
            out.append(result)
            continue
        work = x[i] - 0.5
        pxpy = [(top + q // w, left + q % w) for q in start[i].tolist()]
        for rnd in range(rounds):
            key = keys[rnd][i]
            pxpy = sorted(pxpy, key=lambda rc: key[(rc[0] - top) * w + rc[1] - left].item())[:128]
            scores = []
            for row, col in pxpy:
                copy = work.clone()
                copy[:, row, col] = p * torch.sign(copy[:, row, col])
                with torch.no_grad():
                    scores.append(model((copy + 0.5)[None]).double().softmax(1)[0, y[i]].item())
            star = [pxpy[j] for j in np.argsort(np.array(scores), kind="stable")[:t]]
            for row, col in star:
                for ch in range(x.shape[1]):
                    v = r * work[ch, row, col]
                    if v < -0.5:
                        v = v + 1.0
                    elif v > 0.5:
                        v = v - 1.0
                    work[ch, row, col] = v
            if wrong(model, work + 0.5, y[i]):
                result = work + 0.5
                break
            pxpy = list({(a, b) for ra, rb in star for a in range(ra - d, ra + d + 1) for b in range(rb - d, rb + d + 1)
                         if top <= a < top + h and left <= b < left + w})
        out.append(result)
    return torch.stack(out)


# ---- batched == reference


@pytest.mark.parametrize("region", [None, (4, 0, 4, 4)])
def test_single_pixel_matches_the_per_image_reference(region):
    model, x, y = data()
    attack = SinglePixel(model, max_pixels=20, region=region, seed=3, eval_batch=7)
    adv = attack(x, y)
    ref = ref_single_pixel(model, x, y, 20, region or (0, 0, 8, 8), torch.Generator().manual_seed(3))
    assert torch.equal(adv, ref)
    changed = (adv != x).any(1).flatten(1).sum(1)
    assert changed.max() <= 1 and attack.last_success[2:].any() and not attack.last_success[2:].all()
    assert torch.equal(attack.last_success, torch.tensor([wrong(model, a, b) for a, b in zip(adv, y)]))
    if region:  # nothing outside the box changes
        outside = torch.ones(8, 8, dtype=torch.bool)
        outside[4:8, 0:4] = False
        assert torch.equal(adv[..., outside], x[..., outside])


def test_single_pixel_query_count_is_the_sequential_one():
    model, x, y = data()
    attack = SinglePixel(model, max_pixels=20, seed=3, eval_batch=5)
    attack(x, y)
    q = attack.last_queries
    assert (q[:2] == 1).all()  # misclassified: the clean check only
    assert ((q[2:] >= 2) & (q[2:] <= 41)).all() and (q[2:][~attack.last_success[2:]] == 41).all()


@pytest.mark.parametrize("iterations,region", [(1, None), (3, (2, 2, 5, 5))])
def test_multiple_pixels_matches_the_per_image_reference(iterations, region):
    model, x, y = data()
    attack = MultiplePixels(model, pixels=6, iterations=iterations, region=region, seed=5, eval_batch=9)
    adv = attack(x, y)
    ref = ref_multiple_pixels(model, x, y, 6, iterations, region or (0, 0, 8, 8), torch.Generator().manual_seed(5))
    assert torch.equal(adv, ref)
    assert (adv != x).any(1).flatten(1).sum(1).max() <= 6 and attack.last_success[2:].any()


@pytest.mark.parametrize("region", [None, (0, 0, 6, 6)])
def test_local_search_matches_the_per_image_reference(region):
    model, x, y = data(n=8, seed=3, scale=0.6)  # small weights: the search succeeds on some images, not all
    attack = LocalSearch(model, r=1.5, p=10.0, d=1, t=3, rounds=6, region=region, seed=7, eval_batch=10)
    adv = attack(x, y)
    ref = ref_local_search(model, x, y, 1.5, 10.0, 1, 3, 6, region or (0, 0, 8, 8), torch.Generator().manual_seed(7))
    assert torch.equal(adv, ref)
    assert attack.last_success[2:].any() and ((adv >= 0) & (adv <= 1)).all()


def test_a_second_call_continues_the_stream_and_a_fresh_attack_repeats_it():
    model, x, y = data()
    a = SinglePixel(model, max_pixels=5, seed=0)
    first, second = a(x, y), a(x, y)
    assert torch.equal(SinglePixel(model, max_pixels=5, seed=0)(x, y), first)
    assert not torch.equal(first, second)


def test_registered_and_parameters_checked():
    assert {"single_pixel", "multiple_pixels", "local_search"} <= set(ATTACKS)
    model = RowLinear()
    for bad in (dict(max_pixels=0), dict(region=(0, 0, 0, 4)), dict(seed=1.5)):
        with pytest.raises(PatchbenchError, match="single_pixel"):
            SinglePixel(model, **bad)
    with pytest.raises(PatchbenchError, match="r .*in \\[0, 2\\]"):
        LocalSearch(model, r=3)
    with pytest.raises(PatchbenchError, match="exceed"):
        MultiplePixels(model, pixels=17, region=(0, 0, 4, 4))
    with pytest.raises(PatchbenchError, match="does not fit"):
        SinglePixel(model, region=(6, 6, 4, 4))(torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.tensor([0]))
