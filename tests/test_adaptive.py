"""Adaptive LaVAN through the defense (ICAART Eq. 13, Fig. 10)."""

import pytest
import torch
import torch.nn as nn

from patchbench.attacks import ATTACKS, LaVAN
from patchbench.attacks.adaptive_lavan import AdaptiveLaVAN
from patchbench.attacks.patch import Placement, paste
from patchbench.defenses import build_defense
from patchbench.models import Classifier

from conftest import needs_fmnist, tiny_preset

PARAMS = {"lgs": {"window": 5, "overlap": 2}, "slgs": {"window": 5, "overlap": 2, "erosions": 1},
          "wlgs": {"window": 5, "overlap": 2}}


def tiny_model(dtype=torch.float32, smooth=False):
    """ReLU/max-pool net; ``smooth``: Softplus/avg-pool (its saliency is continuous in x)."""
    torch.manual_seed(0)
    act, pool = (nn.Softplus, nn.AvgPool2d) if smooth else (nn.ReLU, nn.MaxPool2d)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), act(), pool(2),
                        nn.Conv2d(8, 8, 3, padding=1), act(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 5))
    m = Classifier(net, (0.3,), (0.4,), "tiny", list("abcde"), 24).to(dtype)
    return m.requires_grad_(False)


def images(n=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 24, 24, generator=g, dtype=dtype)
    x[:, :, :6] = 0  # flat black regions: Sobel magnitude exactly 0 (the NaN trap of √)
    return x


@pytest.mark.parametrize("name", ["lgs", "slgs", "wlgs"])
@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_forward_equals_defense(name, space):
    model = tiny_model()
    x = images()
    d = build_defense(name, {**PARAMS[name], "space": space}, model)
    ref = d.apply(x, d.maps(x, model), 2.3)
    for sg in ("second-order", "constant"):
        for kg in ("constant", "straight-through"):
            xr = x.clone().requires_grad_(True)  # with a graph (the training path)
            out = d.differentiable(xr, 2.3, model, {"saliency_grad": sg, "keep_grad": kg})
            assert (out - ref).abs().max() <= 1e-5
    assert (d.differentiable(x, 2.3, model) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["lgs", "slgs", "wlgs"])
def test_gradient_flows_to_delta_through_T(name):
    model = tiny_model()
    x = images()
    d = build_defense(name, PARAMS[name], model)
    mask = torch.ones(1, 6, 6)

    def grad(maps_fn):
        delta = torch.full((1, 6, 6), 0.5).add_(torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(2)) * 0.5)
        delta.requires_grad_(True)
        xa = paste(x, delta, mask, 1, 17)
        logits = model(d.apply(xa, maps_fn(xa), 3.0))
        (logits[:, 0] - logits[:, 1]).sum().backward()
        return delta.grad

    full = grad(lambda xa: d.differentiable_maps(xa, model, **d.resolve_grad_options({})))
    frozen = grad(lambda xa: {k: v.detach() for k, v in d.maps(xa.detach(), model).items()})
    assert torch.isfinite(full).all() and full.abs().sum() > 0
    assert not torch.allclose(full, frozen)  # the map's own gradient (through T) contributes
    if name == "wlgs":  # dW/dx through second-order autograd changes the gradient
        const = grad(lambda xa: d.differentiable_maps(xa, model, saliency_grad="constant"))
        assert not torch.allclose(full, const)


@pytest.mark.parametrize("name", ["lgs", "wlgs"])
def test_gradient_matches_finite_difference(name):
    """Away from the piecewise-constant switches, autograd of T is the true derivative (a smooth
    net: a ReLU net's saliency jumps where an activation switches, so finite differences of W
    would straddle jumps; the flat region is not perturbed: |·| and min kinks)."""
    model = tiny_model(torch.float64, smooth=True)
    x = images(3, torch.float64)
    d = build_defense(name, PARAMS[name], model)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v[:, :, :7] = 0

    def f(z):
        return (d.differentiable(z, 2.3, model) * torch.linspace(0, 1, 24, dtype=torch.float64)).sum()

    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xr), xr)
    eps = 1e-6
    fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    assert torch.isclose((g * v).sum(), fd, rtol=1e-4, atol=1e-6)


def _toy_attack(**kw):
    model = tiny_model()
    kw.setdefault("record_every", 2)
    return AdaptiveLaVAN(model, 6, 0, Placement("top-right", 1), 24, steps=6, lr=0.5, seed=0,
                         progress=False, **kw)


def test_history_snapshots_and_meta():
    x, y = images(16), torch.arange(16) % 5
    d = build_defense("wlgs", PARAMS["wlgs"], tiny_model())
    atk = _toy_attack(defense=d, lam=2.3)
    patch = atk.fit(iter([(x, y)] * 6), channels=1, holdout=(x, y))
    assert [h["step"] for h in atk.history] == [0, 2, 4, 6]
    assert [p.meta["step"] for p in atk.snapshots] == [0, 2, 4, 6]
    assert all(h["n"] == int((y != 0).sum()) and 0 <= h["success_rate"] <= 1 for h in atk.history)
    for p in atk.snapshots:
        assert p.meta["attack"] == "lavan-adaptive" and p.meta["adaptive_defense"] == "wlgs"
        assert p.meta["lam"] == 2.3 and p.meta["grad_options"] == {"keep_grad": "constant", "saliency_grad": "second-order"}
        assert p.pixels.min() >= 0 and p.pixels.max() <= 1
    assert not torch.equal(atk.snapshots[0].pixels, atk.snapshots[-1].pixels)
    assert patch.meta["step"] == 6 and torch.equal(patch.pixels, atk.snapshots[-1].pixels)
    assert _toy_attack(record_every=4).record_steps() == [0, 4, 6]
    assert ATTACKS["lavan-adaptive"] is AdaptiveLaVAN


def test_no_defense_is_plain_lavan():
    x, y = images(8), torch.arange(8) % 5
    adaptive = _toy_attack().fit(iter([(x, y)] * 6), channels=1, holdout=(x, y))
    plain = LaVAN(tiny_model(), 6, 0, Placement("top-right", 1), 24, steps=6, lr=0.5, seed=0,
                  progress=False).fit(iter([(x, y)] * 6), channels=1)
    assert adaptive.meta["adaptive_defense"] == "none" and adaptive.meta["lam"] is None
    assert torch.allclose(adaptive.pixels, plain.pixels, atol=1e-6)


@needs_fmnist
@pytest.mark.slow
def test_run_adaptive_end_to_end(tmp_path, monkeypatch):
    from patchbench.sections.adaptive import curves, run_adaptive
    from patchbench.presets import load_preset
    from patchbench.models import build_classifier
    from patchbench.cache.models import LoadedModel, state_id
    from patchbench.store.results import ResultStore

    preset = load_preset(str(tiny_preset(tmp_path / "tiny.yaml", data__eval_n=200)))
    store = ResultStore(tmp_path / "res")
    dev = torch.device("cpu")
    torch.manual_seed(0)  # an untrained small_vgg: this test checks the bookkeeping, not the attack
    model = build_classifier("small_vgg", "fashion-mnist", None, 32).requires_grad_(False)
    loaded = LoadedModel(model, state_id(model), {})
    kw = dict(defense_names=["none", "lgs", "wlgs"], steps=4, record_every=2, progress=False,
              defense_params={"wlgs": {"window": 5, "overlap": 2}}, holdout_n=100)
    rows = run_adaptive(preset, loaded, store, dev, **kw)
    adaptive = rows[rows["attack"] == "lavan-adaptive"]
    assert len(adaptive) == len(rows) == 3 * 3 + 2 * 3  # 3 steps × (defense (+ undefended))
    assert sorted(set(adaptive["attack_step"])) == [0, 2, 4]
    assert set(adaptive["attack_through"]) == {"none", "lgs", "wlgs"}
    lgs = adaptive[adaptive["defense"] == "lgs"]
    assert set(lgs["lam"]) == {2.3} and set(lgs["attack_through"]) == {"lgs"}  # largest preset λ
    assert adaptive["attack_success_rate"].between(0, 1).all()
    assert curves(rows).shape == (3, 3)
    cells = sorted(p.name for p in store.cells_dir.iterdir())
    files = {p: p.stat().st_mtime_ns for p in store.artifacts.rglob("*") if p.is_file()}
    assert len(cells) == len(rows)

    def no_training(*a, **k):
        raise AssertionError("a rerun must not train")

    monkeypatch.setattr(AdaptiveLaVAN, "fit", no_training)
    again = run_adaptive(preset, loaded, store, dev, **kw)
    assert sorted(p.name for p in store.cells_dir.iterdir()) == cells
    assert {p: p.stat().st_mtime_ns for p in store.artifacts.rglob("*") if p.is_file()} == files
    assert list(again["run_id"]) == list(rows["run_id"])
    assert list(again["attack_step"]) == list(rows["attack_step"])
