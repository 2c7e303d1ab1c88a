"""The N-pixel attack (patchbench.attacks.npixel) against a slow per-image differential evolution
written here from Su et al.'s description (plain Python loops over images, individuals and
pixels), fed the same random numbers; its invariants; and the BMVC 2023 Sec. 5 protocol."""

import math
import re

import pytest
import torch
import torch.nn as nn

from patchbench.attacks.npixel import NPixel
from patchbench.attacks.regions import attacked_accuracy, npixel_extent, protocol_regions
from patchbench.config import EvasionConfig
from patchbench.errors import PatchbenchError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(channels=3, classes=4, seed=1):
    """A random net, sensitive to single pixels through its max pooling, with logits scaled ×20 so
    that its softmax is not flat (a mix of successes, failures and early stops below)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(),
                        nn.Linear(32, classes))
    with torch.no_grad():
        net[-1].weight.mul_(20)
        net[-1].bias.mul_(20)
    return net.eval()


class BrightPixel(nn.Module):
    """Class 1 iff some pixel of the box (top, left, h, w) is brighter than 0.9, else class 0."""

    def __init__(self, box=(0, 0, 8, 8)):
        super().__init__()
        self.box = box
        self.dummy = nn.Parameter(torch.zeros(1))  # Attack.device reads the parameters

    def forward(self, x):
        t, left, h, w = self.box
        peak = x[:, :, t:t + h, left:left + w].amax((1, 2, 3))
        return torch.stack([torch.zeros_like(peak), 20 * (peak - 0.9)], 1)


# --------------------------------------------------------------------------------------------
# the slow reference: Su et al.'s DE, one image and one individual at a time


def reference_npixel(model, x, y, *, pixels, population, iterations, f=0.5, crossover=None, early_stop=0.05,
                     stop_on_success=True, region=None, init="gaussian", out_of_bounds="clip", seed=0):
    """Returns (adversarial images, generations run per image). The random numbers are drawn in
    the documented order (all of them up front: they do not depend on the search); the search
    itself follows Su et al. image by image."""
    gen = torch.Generator().manual_seed(seed)
    b, c, height, width = x.shape
    p, n, d = population, pixels, 2 + c
    top, left, h, w = region or (0, 0, height, width)
    lo = torch.tensor([top, left] + [0] * c, dtype=torch.float32)
    hi = torch.tensor([top + h, left + w] + [1] * c, dtype=torch.float32)
    pos = torch.rand(b, p, n, 2, generator=gen)
    if init == "gaussian":
        colours = torch.randn(b, p, n, c, generator=gen) * (127 / 255) + 128 / 255
    else:
        colours = torch.rand(b, p, n, c, generator=gen)
    draws = []
    for _ in range(iterations):
        u = torch.rand(b, p, 3, generator=gen, dtype=torch.float64)
        cr = torch.rand(b, p, n * d, generator=gen) if crossover is not None else None
        jr = torch.rand(b, p, generator=gen, dtype=torch.float64) if crossover is not None else None
        fresh = torch.rand(b, p, n, d, generator=gen) if out_of_bounds == "resample" else None
        draws.append((u, cr, jr, fresh))

    def paint(img, cand):  # sequentially, pixel by pixel: a later pixel overwrites an earlier one
        out = img.clone()
        for j in range(n):
            r = min(max(math.floor(cand[j, 0].item()), top), top + h - 1)
            col = min(max(math.floor(cand[j, 1].item()), left), left + w - 1)
            for ch in range(c):
                out[ch, r, col] = cand[j, 2 + ch]
        return out

    def fitness(img, label, cand):
        with torch.no_grad():
            logits = model(paint(img, cand)[None])[0]
        return logits.softmax(0)[label], bool(logits.argmax() != label)

    advs, gens = [], []
    for k in range(b):
        img, label = x[k], int(y[k])
        with torch.no_grad():
            if model(img[None])[0].argmax() != label:
                advs.append(img.clone())
                gens.append(0)
                continue
        popu = []
        for i in range(p):
            cand = torch.empty(n, d)
            cand[:, :2] = lo[:2] + pos[k, i] * (hi[:2] - lo[:2])
            cand[:, 2:] = colours[k, i].clamp(0, 1)
            popu.append(cand)
        best = None  # (misclassified, p_y, candidate)

        def consider(cand, prob, wrong):
            nonlocal best
            if best is None or (wrong and not best[0]) or (wrong == best[0] and prob < best[1]):
                best = (wrong, prob, cand)

        fit = []
        for cand in popu:
            prob, wrong = fitness(img, label, cand)
            consider(cand, prob, wrong)
            fit.append(prob)

        def stopped():
            return (stop_on_success and best[0]) or (early_stop is not None and bool(min(fit) < early_stop))

        g = 0
        while g < iterations and not stopped():
            u, cr, jr, fresh = draws[g]
            children = []
            for i in range(p):  # DE/rand/1 from the current generation
                rest = [j for j in range(p) if j != i]
                r1 = rest.pop(int(u[k, i, 0].item() * (p - 1)))
                r2 = rest.pop(int(u[k, i, 1].item() * (p - 2)))
                r3 = rest.pop(int(u[k, i, 2].item() * (p - 3)))
                child = popu[r1] + f * (popu[r2] - popu[r3])
                if crossover is not None:
                    flat, parent = child.flatten().clone(), popu[i].flatten()
                    j_rand = int(jr[k, i].item() * n * d)
                    for j in range(n * d):
                        if not (cr[k, i, j] < crossover or j == j_rand):
                            flat[j] = parent[j]
                    child = flat.view(n, d)
                for j in range(n):
                    for q in range(d):
                        if out_of_bounds == "clip":
                            child[j, q] = torch.min(torch.max(child[j, q], lo[q]), hi[q])
                        elif child[j, q] < lo[q] or child[j, q] > hi[q]:
                            child[j, q] = lo[q] + fresh[k, i, j, q] * (hi[q] - lo[q])
                children.append(child)
            for i, child in enumerate(children):  # the child wins unless it is worse
                prob, wrong = fitness(img, label, child)
                consider(child, prob, wrong)
                if prob <= fit[i]:
                    popu[i], fit[i] = child, prob
            g += 1
        advs.append(paint(img, best[2]))
        gens.append(g)
    return torch.stack(advs), gens


def reference_case(seed=1):
    model = tiny_net(seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.rand(12, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 4  # two images the model gets wrong: returned unchanged
    return model, x, y


CASES = [
    dict(pixels=2, population=12, iterations=8),  # Su et al.: gaussian init, no crossover, clip
    dict(pixels=3, population=10, iterations=6, crossover=0.5, out_of_bounds="resample", init="uniform",
         region=(1, 2, 5, 4), stop_on_success=False, early_stop=0.2, f=0.8),
    dict(pixels=1, population=8, iterations=8, early_stop=None, eval_batch=7),
]


@pytest.mark.parametrize("case", CASES, ids=["su", "bin-resample-region", "chunked"])
def test_batched_de_equals_the_per_image_reference(case):
    model, x, y = reference_case()
    kw = dict(case)
    eval_batch = kw.pop("eval_batch", 256)
    atk = NPixel(model, seed=3, eval_batch=eval_batch, **kw)
    adv = atk(x, y)
    ref, gens = reference_npixel(model, x, y, seed=3, **kw)
    assert torch.equal(adv, ref)
    assert atk.last_generations.tolist() == gens
    with torch.no_grad():
        ok = model(ref).argmax(1) != y
    assert atk.last_success.tolist() == ok.tolist()
    assert torch.equal(adv[:2], x[:2])  # misclassified already: untouched
    attacked = ok[2:]
    assert 0 < int(attacked.sum()) < len(attacked) or kw.get("stop_on_success") is False  # a mix: the check means something


def test_at_most_n_pixels_change_inside_the_region_and_in_range():
    model, x, y = reference_case(2)
    region = (2, 3, 4, 3)
    adv = NPixel(model, pixels=3, population=10, iterations=4, region=region, seed=1)(x, y)
    assert adv.min() >= 0 and adv.max() <= 1
    changed = (adv != x).any(1)  # B×H×W
    assert int(changed.flatten(1).sum(1).max()) <= 3
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[2:6, 3:6] = True
    assert not changed[:, ~inside].any()
    assert changed[2:].any()  # something was painted


def test_deterministic_for_a_seed():
    model, x, y = reference_case(3)
    kw = dict(pixels=2, population=8, iterations=3)
    a = NPixel(model, seed=7, **kw)(x, y)
    assert torch.equal(a, NPixel(model, seed=7, **kw)(x, y))
    assert not torch.equal(a, NPixel(model, seed=8, **kw)(x, y))


def test_a_model_fooled_by_one_bright_pixel_is_fooled():
    model = BrightPixel()
    x = torch.rand(16, 1, 8, 8) * 0.5
    y = torch.zeros(16, dtype=torch.long)
    atk = NPixel(model, pixels=1, population=10, iterations=10, seed=0)
    adv = atk(x, y)
    assert bool((model(adv).argmax(1) == 1).all())
    assert int((adv != x).flatten(1).sum(1).max()) == 1
    assert atk.last_success.all()


def test_protocol_regions():
    q = protocol_regions(8, npixel_extent(4))
    assert len(q) == 5 and q[4] == (2, 2, 4, 4)
    cover = torch.zeros(8, 8, dtype=torch.long)
    for t, left, h, w in q[:4]:
        cover[t:t + h, left:left + w] += 1
    assert bool((cover == 1).all())  # the 4 quadrants tile the image
    odd = protocol_regions((9, 7), 3)
    cover = torch.zeros(9, 7, dtype=torch.long)
    for t, left, h, w in odd[:4]:
        cover[t:t + h, left:left + w] += 1
    assert bool((cover == 1).all()) and odd[4] == (2, 2, 4, 3)
    assert protocol_regions(8, 5) == [(1, 1, 5, 5)]  # spans quadrants: only the centre
    assert protocol_regions(32, npixel_extent(257)) == [(7, 7, 17, 17)]
    assert [npixel_extent(n) for n in (1, 2, 4, 5, 16, 17, 256)] == [1, 2, 2, 3, 4, 5, 16]


def test_attacked_accuracy_averages_the_five_regions():
    """A model fooled only by a bright pixel in the top-left quadrant: fooled when attacked in
    that quadrant and in the centre box (which overlaps it), never in the other three: 3/5."""
    model = BrightPixel((0, 0, 4, 4))
    x = torch.rand(6, 1, 8, 8) * 0.5
    y = torch.zeros(6, dtype=torch.long)

    def factory(box):
        return NPixel(model, pixels=1, population=20, iterations=20, region=box, seed=0)

    acc = attacked_accuracy(model, x, y, factory, protocol_regions(8, 1))
    assert acc == pytest.approx(3 / 5)


# --------------------------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize("bad, says", [
    (dict(pixels=0), "npixel: pixels must be an integer >= 1, got 0"),
    (dict(pixels=1.5), "npixel: pixels must be an integer >= 1, got 1.5"),
    (dict(population=3), "npixel: population must be an integer >= 4"),
    (dict(iterations=-1), "npixel: iterations must be an integer >= 0, got -1"),
    (dict(f=0), "npixel: f (mutation scale F) must be a number in (0, 2], got 0"),
    (dict(f=2.5), "npixel: f (mutation scale F) must be a number in (0, 2], got 2.5"),
    (dict(crossover=1.5), "npixel: crossover must be None (Su et al.: none) or a probability in [0, 1], got 1.5"),
    (dict(early_stop=0), "npixel: early_stop must be None or a true-class probability in (0, 1], got 0"),
    (dict(early_stop=2), "npixel: early_stop must be None or a true-class probability in (0, 1], got 2"),
    (dict(stop_on_success="yes"), "npixel: stop_on_success must be true or false, got 'yes'"),
    (dict(region=(0, 0, 0, 4)), "npixel: region needs top, left >= 0 and height, width >= 1, got (0, 0, 0, 4)"),
    (dict(region=(0, 0, 4)), "npixel: region must be 4 integers (top, left, height, width), got (0, 0, 4)"),
    (dict(region=(0, 0, 2, 2), pixels=5), "npixel: pixels (5) must not exceed the region's 4 pixels"),
    (dict(init="lhs"), "npixel: init must be one of gaussian, uniform, got 'lhs'"),
    (dict(out_of_bounds="wrap"), "npixel: out_of_bounds must be one of clip, resample, got 'wrap'"),
    (dict(eval_batch=0), "npixel: eval_batch must be an integer >= 1, got 0"),
    (dict(seed="x"), "npixel: seed must be an integer, got 'x'"),
])
def test_bad_parameters_raise(bad, says):
    with pytest.raises(PatchbenchError, match=re.escape(says)):
        NPixel(tiny_net(), **bad)


def test_region_or_pixels_that_do_not_fit_the_images_raise():
    model, x, y = reference_case()
    with pytest.raises(PatchbenchError, match="does not fit"):
        NPixel(model, region=(4, 4, 6, 2))(x, y)
    with pytest.raises(PatchbenchError, match="pixels"):
        NPixel(model, pixels=65)(x, y)


def test_config():
    cfg = EvasionConfig(name="npixel", eps=0.3, steps=7, params={"pixels": 2, "population": 16, "region": [0, 0, 4, 4]}, seed=5)
    atk = NPixel.from_config(tiny_net(), cfg, 8)  # eps ignored, steps -> iterations
    assert (atk.iterations, atk.pixels, atk.population, atk.region, atk.seed) == (7, 2, 16, (0, 0, 4, 4), 5)
    for bad, says in [(dict(step_size=0.1), "attack npixel takes no step_size"),
                      (dict(params={"eps": 0.1}), "attack npixel has no parameter 'eps'"),
                      (dict(params={"pixels": 0}), "pixels must be an integer >= 1, got 0"),
                      (dict(steps=0), "attack.steps must be an integer >= 1, got 0"),
                      (dict(params={"iterations": 3}), "give steps or params.iterations, not both"),
                      (dict(params={"region": [0, 0, 1, 1], "pixels": 2}), "pixels (2) must not exceed the region's 1 pixels")]:
        with pytest.raises(PatchbenchError, match=re.escape(says)):
            NPixel.check_config(EvasionConfig(**{"name": "npixel", "steps": 7, **bad}), 8)
