"""Every registered defense through the Defense contract (patchbench/defenses/base.py), and the
registry's refusal of every class that breaks it."""

import dataclasses
import itertools

import pytest
import torch
import torch.nn as nn

from patchbench.defenses import DEFENSES, build_defense
from patchbench.defenses.base import GRADIENTS, OUT, Defense, check_defense_class
from patchbench.defenses.gradcheck import check_declared_gradient, declared_vs_finite, false_declaration, relative_error
from patchbench.registry import Registry, own_name
from patchbench.errors import PatchbenchError
from patchbench.models.wrapper import Classifier

# small-image settings where a default would be slow or degenerate at 16 px; any other registered
# defense runs with its defaults
PARAMS = {
    "lgs": {"window": 5, "overlap": 2, "threshold": 0.1},
    "slgs": {"window": 5, "overlap": 2, "threshold": 0.1, "erosions": 0, "dilations": 1},
    "wlgs": {"window": 5, "overlap": 2, "threshold": 0.1},
    "tvm": {"max_iter": 30},
    "dw": {"inpaint_iter": 30, "erosions": 0},
    "patchcleanser": {"patch_px": 3, "k": 3},
}
LAM = 2.3
NAMES = list(DEFENSES)


def registry(*classes):
    """A fresh defense registry built the way DEFENSES is."""
    return Registry("defense", check_defense_class, own_name).register_all(classes)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(channels, classes=6):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(16, classes))
    model = Classifier(net, [0.45] * channels, [0.25] * channels, "tiny", [str(i) for i in range(classes)])
    return model.eval().requires_grad_(False)


def images(channels, n=2, seed=0):
    """Smooth ramp plus a noisy square, different per image, in [0, 1] (16×16)."""
    gen = torch.Generator().manual_seed(seed + channels)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    x = (0.2 + 0.5 * yy * xx).expand(n, channels, 16, 16).clone() + 0.05 * torch.rand(n, channels, 16, 16, generator=gen)
    for b in range(n):
        t, left = torch.randint(0, 9, (2,), generator=gen).tolist()
        x[b, :, t:t + 7, left:left + 7] = torch.rand(channels, 7, 7, generator=gen)
    return x.clamp(0, 1)


def setup(name, channels, space=None):
    model = tiny_model(channels)
    params = dict(PARAMS.get(name, {}))
    if space is not None:
        params["space"] = space
    d = build_defense(name, params, model)
    return d, model, (LAM if d.uses_lambda else None)


def spaces(name):
    """Both LGS spaces for the defenses that have the parameter."""
    return ["pixel", "normalized"] if "space" in DEFENSES[name].param_names() else [None]


CASES = [(n, c, s) for n in NAMES for c in (1, 3) for s in spaces(n)]
IDS = [f"{n}-{c}ch" + (f"-{s}" if s else "") for n, c, s in CASES]


def option_sets(cls):
    """Every combination of the defense's declared gradient choices."""
    keys = list(cls.grad_options)
    return [dict(zip(keys, values)) for values in itertools.product(*(cls.grad_options[k] for k in keys))]


# ---- the registry ----------------------------------------------------------------------------


def test_registry_is_keyed_by_each_class_name_and_every_class_passes_the_check():
    assert NAMES[0] == "none" and len(NAMES) >= 10
    for name, cls in DEFENSES.items():
        assert cls.name == name and cls.gradient in GRADIENTS
        check_defense_class(cls)
    assert registry(*DEFENSES.values()) == DEFENSES


@pytest.mark.parametrize("name,channels,space", CASES, ids=IDS)
def test_shape_range_and_maps(name, channels, space):
    d, model, lam = setup(name, channels, space)
    x = images(channels)
    maps = d.maps(x, model)
    y = d.apply(x, maps, lam)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1 and torch.isfinite(y).all()
    assert set(d.saved_maps) <= set(maps)  # `defend --save-maps` finds every map it is promised
    if name != "none":
        assert not torch.equal(y, x), "the test images should be changed by every real defense"
    if d.uses_lambda:
        assert torch.equal(d.apply(x, maps, 0.0), x) or torch.allclose(d.apply(x, maps, 0.0), x, atol=1e-6)
    else:  # λ-free: the output is computed in maps, the base's apply hands it back
        assert d.apply(x, maps, None) is maps[OUT]


@pytest.mark.parametrize("name,channels,space", CASES, ids=IDS)
def test_batch_invariance(name, channels, space):
    d, model, lam = setup(name, channels, space)
    x = images(channels, n=3, seed=7)
    together = d(x, lam, model)
    alone = torch.cat([d(x[i:i + 1], lam, model) for i in range(len(x))])
    try:
        d.maps(x, None)
        atol = 0.0  # no classifier involved: bit for bit
    except PatchbenchError:
        atol = 1e-6  # the classifier's saliency may use batch-size dependent kernels (rounding)
    torch.testing.assert_close(together, alone, atol=atol, rtol=0)


@pytest.mark.parametrize("name,channels,space", CASES, ids=IDS)
def test_differentiable_forward_value_is_apply(name, channels, space):
    d, model, lam = setup(name, channels, space)
    x = images(channels)
    ref = d.apply(x, d.maps(x, model), lam)
    assert torch.equal(d.differentiable(x, lam, model), ref)  # no graph: the same computation
    for options in option_sets(type(d)):
        xr = x.clone().requires_grad_(True)  # with a graph (the adaptive attack's path)
        out = d.differentiable(xr, lam, model, options)
        # 'exact' / 'bpda' take the same arithmetic; LGS's Sobel sums in another order with a graph
        torch.testing.assert_close(out.detach(), ref, atol=0 if d.gradient != "partial" else 1e-6, rtol=0)


def _weights(x):
    return torch.linspace(-1, 1, x.numel()).view_as(x)


@pytest.mark.parametrize("name,channels,space", CASES, ids=IDS)
def test_declared_gradient(name, channels, space):
    d, model, lam = setup(name, channels, space)
    x = images(channels)
    w = _weights(x)
    if d.gradient == "exact":  # autograd through maps + apply, as written
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((d.differentiable(xr, lam, model) * w).sum(), xr)
        xr2 = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad((d.apply(xr2, d.maps(xr2, model), lam) * w).sum(), xr2)
        assert torch.equal(g, ref) and g.abs().sum() > 0
    elif d.gradient == "bpda":  # identity backward
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((d.differentiable(xr, lam, model) * w).sum(), xr)
        assert torch.equal(g, w)
    else:  # partial: a finite, non-zero gradient for every declared choice
        assert type(d).grad_options
        for options in option_sets(type(d)):
            xr = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad((d.differentiable(xr, lam, model, options) * w).sum(), xr)
            assert torch.isfinite(g).all() and g.abs().sum() > 0, options
            assert not torch.equal(g, w), "a partial gradient is not the identity"


def test_unknown_grad_option_value_is_refused():
    for cls in DEFENSES.values():
        for key in cls.grad_options:
            with pytest.raises(PatchbenchError, match=key):
                cls.resolve_grad_options({key: "no-such-choice"})


@pytest.mark.parametrize("name", NAMES)
def test_parameters_round_trip_and_unknown_names_are_refused(name):
    cls = DEFENSES[name]
    cls.check_params({})
    d = cls()
    assert list(d.params()) == cls.param_names()
    assert cls.from_params(d.params()).params() == d.params()
    with pytest.raises(PatchbenchError, match="bogus"):
        build_defense(name, {"bogus": 1})


@pytest.mark.parametrize("name", [n for n in NAMES if DEFENSES[n].param_names()])
def test_bad_values_are_refused_before_any_model_is_there(name):
    """check_params (preset loading) checks values, not just names."""
    cls = DEFENSES[name]
    field = cls.param_names()[0]
    with pytest.raises(PatchbenchError, match=f"{name} {field} must be"):
        cls.check_params({field: object()})


# ---- refusals --------------------------------------------------------------------------------


def toy(dataclass=True, apply=False, diff_maps=False, **classvars):
    """A valid λ-free defense class unless the arguments break it."""
    ns = {"__annotations__": {"strength": float}, "strength": 0.5,
          "maps": lambda self, x, model=None: {OUT: x * self.strength}, "name": "toy", "gradient": "exact",
          "uses_lambda": False}
    if apply:
        ns["apply"] = lambda self, x, maps, lam: maps[OUT] * lam
    if diff_maps:
        ns["differentiable_maps"] = lambda self, x, model=None, **options: self.maps(x, model)
    ns.update(classvars)
    cls = type("Toy", (Defense,), ns)
    return dataclasses.dataclass(cls) if dataclass else cls


def test_a_valid_toy_registers():
    cls = toy()
    assert registry(cls) == {"toy": cls}
    partial = toy(diff_maps=True, gradient="partial", grad_options={"k": ("a", "b")}, name="toy2")
    lam = toy(apply=True, uses_lambda=True, name="toy3")
    assert list(registry(cls, partial, lam)) == ["toy", "toy2", "toy3"]


@pytest.mark.parametrize("broken,message", [
    (dict(gradient="magic"), "gradient must be"),
    (dict(gradient="partial", grad_options={"k": ("a",)}), "override differentiable_maps"),
    (dict(gradient="partial", diff_maps=True), "declare grad_options"),
    (dict(gradient="partial", diff_maps=True, grad_options={"k": ["a", "b"]}), "tuples of strings"),
    (dict(gradient="partial", diff_maps=True, grad_options={"k": ()}), "tuples of strings"),
    (dict(gradient="partial", diff_maps=True, grad_options={"k": ("a", 2)}), "tuples of strings"),
    (dict(gradient="partial", diff_maps=True, grad_options={3: ("a",)}), "tuples of strings"),
    (dict(gradient="exact", grad_options={"k": ("a",)}), "has no choices"),
    (dict(gradient="bpda", grad_options={"k": ("a",)}), "has no choices"),
    (dict(uses_lambda=1), "uses_lambda must be a bool"),
    (dict(uses_lambda="yes"), "uses_lambda must be a bool"),
    (dict(uses_lambda=True), "must override apply"),
    (dict(dataclass=False), "dataclass"),
    (dict(name=""), "name"),
    (dict(saved_maps=["g"]), "saved_maps"),
    (dict(maps=None), "maps"),
])
def test_registration_refuses_a_broken_class(broken, message):
    if broken.get("maps", 1) is None:  # an abstract method left unimplemented
        cls = dataclasses.dataclass(type("Toy", (Defense,), {"name": "toy"}))
    else:
        cls = toy(**broken)
    with pytest.raises(PatchbenchError, match=message):
        registry(cls)


def test_registration_refuses_a_subclass_without_its_own_name_or_dataclass():
    base = toy()
    with pytest.raises(PatchbenchError, match="own name"):
        registry(dataclasses.dataclass(type("Sub", (base,), {})))
    with pytest.raises(PatchbenchError, match="dataclass"):
        registry(type("Sub", (base,), {"name": "sub"}))
    with pytest.raises(PatchbenchError, match="not a Defense"):
        registry(int)


def test_registration_refuses_a_duplicate_name():
    first, second = toy(), toy()
    with pytest.raises(PatchbenchError, match="'toy' is already registered"):
        registry(first, second)
    with pytest.raises(PatchbenchError, match="'lgs' is already registered"):
        registry(*DEFENSES.values(), toy(name="lgs"))


# ---- the declared gradient, probed at registration ------------------------------------------------


def exact(name, forward, **fields):
    """A λ-free class declaring an exact gradient, its output ``forward(self, x)``."""
    ns = {"__annotations__": {k: type(v) for k, v in fields.items()}, **fields, "name": name, "gradient": "exact",
          "uses_lambda": False, "maps": lambda self, x, model=None: {OUT: forward(self, x)}}
    return dataclasses.dataclass(type(name.title().replace("-", ""), (Defense,), ns))


@pytest.mark.parametrize("forward,message", [
    (lambda self, x: torch.round(x * 8) / 8, "is zero .* while a step of 4/255 moves the output"),  # shattered
    (lambda self, x: x.detach() + 0 * x, "is zero"),  # a zero gradient through a graph
    (lambda self, x: 0.5 * x.detach(), "has no graph to the input"),
    (lambda self, x: 2 * x.detach() - (x - x.detach()), "disagrees with the finite difference"),  # -1 declared, 2 true
], ids=["quantizer", "zero", "detached", "wrong-sign"])
def test_a_false_exact_gradient_is_refused_at_registration_in_one_line(forward, message):
    cls = exact("false-grad", forward)
    with pytest.raises(PatchbenchError, match=message) as err:
        registry(cls)
    assert "\n" not in str(err.value) and "declare 'bpda'" in str(err.value)
    bpda = dataclasses.dataclass(type("Declared", (cls,), {"name": "false-grad-bpda", "gradient": "bpda"}))
    assert registry(bpda)  # the same forward declared as what it is registers


def test_a_plugin_with_a_false_exact_gradient_is_not_registered():
    from patchbench.defenses import register_defense

    with pytest.raises(PatchbenchError, match="zero or shattered"):
        register_defense(exact("plugin-quantizer", lambda self, x: torch.round(x * 8) / 8))
    assert "plugin-quantizer" not in DEFENSES


def test_true_exact_gradients_register():
    smooth = exact("smooth-test", lambda self, x: (x * self.a).sigmoid(), a=3.0)
    noisy = exact("noisy-exact-test", lambda self, x: (x + 0.1 * torch.randn_like(x)).clamp(0, 1))  # per draw
    assert list(registry(smooth, noisy)) == ["smooth-test", "noisy-exact-test"]
    assert check_declared_gradient(smooth)  # probed, not skipped


def test_a_class_without_defaults_is_probed_at_its_first_build():
    from patchbench.defenses import register_defense

    cls = exact("no-defaults-test", lambda self, x: torch.round(x * self.levels) / self.levels)
    cls = dataclasses.dataclass(type("NoDefaults", (cls,), {"__annotations__": {"levels": float}, "name": "no-defaults-test"}))
    register_defense(cls)  # cannot be built without its parameter: not probed yet
    try:
        with pytest.raises(PatchbenchError, match="zero or shattered"):
            build_defense("no-defaults-test", {"levels": 8.0})
    finally:
        del DEFENSES["no-defaults-test"]


@pytest.mark.parametrize("name", [n for n in NAMES if DEFENSES[n].gradient == "exact"])
def test_every_shipped_exact_gradient_passes_the_registration_probe(name):
    """The shipped listing is registered without the probe (PatchCleanser's default 36 masks take
    seconds at every import); here each exact one is probed, with the small-image settings above."""
    probe = declared_vs_finite(build_defense(name, PARAMS.get(name, {})))
    assert probe is not None and false_declaration(probe) is None, name
    assert relative_error(probe) < 0.1  # median: its order statistics switch within h for some pixels
