"""L∞ attacks (patchbench.attacks.linf and its subclasses) and A3 (patchbench.attacks.a3) on a tiny trained model."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks import ATTACKS, CW, FGSM, PGD, IterStepLL, StepLL
from patchbench.attacks.a3 import A3, PGDA3
from patchbench.attacks.cw import cw_margin_loss
from patchbench.attacks.linf import default_step_size
from patchbench.errors import PatchbenchError
from patchbench.models.gradcam import attention_area
from patchbench.models import Classifier
from conftest import quadrant_data

EPS = 0.2  # on the quadrant task: FGSM ~0.87, PGD-10 ~0.75, PGD-100 ~0.73 accuracy (clean 1.0)
CAM_LAYER = "net.4"  # the second conv's ReLU inside the Classifier


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net():
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(64, 4))
    return Classifier(net, (0.5,), (0.25,), "tiny", list("abcd"))


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained to 100 % clean accuracy on the quadrant task (~1 s)."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = tiny_net()
    x, y = quadrant_data(2000)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(300):
        i = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    torch.set_num_threads(n_threads)
    return model


@pytest.fixture(scope="module")
def test_set():
    return quadrant_data(400, seed=1)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def make(name, model, eps=EPS, steps=5):
    cls = ATTACKS[name]
    kwargs = {} if name in ("fgsm", "stepll", "stepll+a3") else {"steps": steps}
    if name.endswith("+a3"):
        kwargs["cam"] = CAM_LAYER
    return cls(model, eps, **kwargs)


PIXEL_ATTACKS = ["fgsm", "pgd", "cw", "stepll", "iter-stepll", "pgd+a3", "stepll+a3", "iter-stepll+a3"]


@pytest.mark.parametrize("name", PIXEL_ATTACKS)
def test_stays_in_eps_ball_and_range_and_leaves_model_alone(name, trained, test_set):
    x, y = test_set[0][:64], test_set[1][:64]
    x = x.clone()
    x[:8] = 1.0  # saturated images: the [0, 1] clamp binds
    x[8:16] = 0.0
    for mode in (False, True):  # an eval model stays in eval; a training model gets train mode back
        trained.train(mode)
        x_adv = make(name, trained)(x, y)
        assert trained.training == mode
        assert x_adv.shape == x.shape and not x_adv.requires_grad
        assert (x_adv - x).abs().max() <= EPS + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert (x_adv != x).any()
    trained.eval()
    assert all(p.grad is None for p in trained.parameters())


def test_attacks_work_under_no_grad(trained, test_set):
    x, y = test_set[0][:32], test_set[1][:32]
    with torch.no_grad():
        x_adv = PGD(trained, EPS, 3)(x, y)
    assert (x_adv != x).any()


def test_fgsm_and_pgd_reduce_accuracy_and_strength_order(trained, test_set):
    x, y = test_set
    clean = accuracy(trained, x, y)
    fgsm = accuracy(trained, FGSM(trained, EPS)(x, y), y)
    pgd10 = accuracy(trained, PGD(trained, EPS, 10, seed=0)(x, y), y)
    pgd100 = accuracy(trained, PGD(trained, EPS, 100, seed=0)(x, y), y)
    cw10 = accuracy(trained, CW(trained, EPS, 10, seed=0)(x, y), y)
    assert clean == 1.0
    assert fgsm < 0.95 and pgd10 < 0.9 and cw10 < 0.9
    tol = 0.03  # "within noise": 400 images
    assert fgsm >= pgd10 - tol and pgd10 >= pgd100 - tol


def test_fgsm_is_one_signed_gradient_step(trained, test_set):
    x, y = test_set[0][:16], test_set[1][:16]
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(trained(xg), y, reduction="sum"), xg)
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    assert torch.allclose(FGSM(trained, 0.1)(x, y), expected, atol=1e-6)


def test_cw_margin_loss_hand_example():
    logits = torch.tensor([[2.0, 5.0, 1.0], [4.0, 1.0, 3.0], [0.0, -100.0, 60.0]])
    y = torch.tensor([0, 0, 1])
    # z_y - max_{j != y} z_j: 2-5 = -3; 4-3 = 1; -100-60 = -160 -> clipped at -κ
    assert torch.allclose(cw_margin_loss(logits, y, kappa=50.0), torch.tensor([-3.0, 1.0, -50.0]))
    assert torch.allclose(cw_margin_loss(logits, y, kappa=0.0), torch.tensor([0.0, 1.0, 0.0]))
    # the attack ascends its negative
    assert torch.allclose(CW(nn.Linear(1, 1), 0.1, kappa=2.0).loss(logits, y), torch.tensor([2.0, -1.0, 2.0]))


def test_stepll_moves_toward_least_likely_class(trained, test_set):
    x, y = test_set[0][:200], test_set[1][:200]
    with torch.no_grad():
        logits = trained(x)
    y_ll = logits.argmin(1)
    # Eq. 4 literally
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(trained(xg), y_ll, reduction="sum"), xg)
    expected = (x - EPS * grad.sign()).clamp(0, 1)
    x_adv = StepLL(trained, EPS)(x, y)
    assert torch.allclose(x_adv, expected, atol=1e-6)
    with torch.no_grad():
        ce_before = F.cross_entropy(trained(x), y_ll, reduction="none")
        ce_after = F.cross_entropy(trained(x_adv), y_ll, reduction="none")
        ce_iter = F.cross_entropy(trained(IterStepLL(trained, EPS, 10)(x, y)), y_ll, reduction="none")
    assert (ce_after < ce_before).float().mean() > 0.95
    assert ce_iter.mean() < ce_after.mean()


@pytest.mark.parametrize("kwargs,param", [
    ({"eps": 0}, "eps"), ({"eps": -0.1}, "eps"), ({"eps": math.nan}, "eps"), ({"eps": math.inf}, "eps"),
    ({"eps": 8}, "eps"), ({"eps": "0.1"}, "eps"), ({"eps": True}, "eps"),
    ({"eps": 0.1, "steps": 0}, "steps"), ({"eps": 0.1, "steps": 2.5}, "steps"), ({"eps": 0.1, "steps": -3}, "steps"),
    ({"eps": 0.1, "steps": 5, "step_size": 0}, "step_size"), ({"eps": 0.1, "steps": 5, "step_size": -0.01}, "step_size"),
    ({"eps": 0.1, "steps": 5, "step_size": math.nan}, "step_size"),
])
@pytest.mark.parametrize("cls", [PGD, CW, IterStepLL])
def test_bad_parameters_raise_one_line_error(cls, kwargs, param):
    with pytest.raises(PatchbenchError, match=param) as info:
        cls(nn.Linear(1, 1), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [FGSM, StepLL])
def test_bad_eps_single_step(cls):
    with pytest.raises(PatchbenchError, match="eps"):
        cls(nn.Linear(1, 1), 1.5)


def test_bad_kappa_and_sigma():
    with pytest.raises(PatchbenchError, match="kappa"):
        CW(nn.Linear(1, 1), 0.1, kappa=-1)
    with pytest.raises(PatchbenchError, match="sigma"):
        PGDA3(tiny_net(), 0.1, sigma=-1, cam=CAM_LAYER)


def test_default_step_size_rule():
    assert PGD(nn.Linear(1, 1), 0.3, 40).step_size == pytest.approx(2.5 * 0.3 / 40)
    assert default_step_size(8 / 255, 10) == pytest.approx(2 / 255)
    assert PGD(nn.Linear(1, 1), 0.3, 40, step_size=0.01).step_size == 0.01


def test_pgd_is_deterministic_given_the_seed(trained, test_set):
    x, y = test_set[0][:64], test_set[1][:64]
    a = PGD(trained, EPS, 3, seed=7)(x, y)
    b = PGD(trained, EPS, 3, seed=7)(x, y)
    c = PGD(trained, EPS, 3, seed=8)(x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a sequence of calls reproduces too (the generator continues across calls)
    p, q = PGD(trained, EPS, 3, seed=7), PGD(trained, EPS, 3, seed=7)
    assert torch.equal(p(x, y), q(x, y)) and torch.equal(p(x, y), q(x, y))
    # without a random start PGD is a deterministic function of the images
    assert torch.equal(PGD(trained, EPS, 3, random_start=False, seed=1)(x, y),
                       PGD(trained, EPS, 3, random_start=False, seed=2)(x, y))


@pytest.mark.parametrize("cls", [PGD, CW])
def test_forward_at_equals_separate_runs_with_the_same_step_size(cls, trained, test_set):
    x, y = test_set[0][:64], test_set[1][:64]
    iterates = cls(trained, EPS, 6, step_size=0.05, seed=4).forward_at(x, y, at=[2, 6])
    assert set(iterates) == {2, 6}
    assert torch.equal(iterates[2], cls(trained, EPS, 2, step_size=0.05, seed=4)(x, y))
    assert torch.equal(iterates[6], cls(trained, EPS, 6, step_size=0.05, seed=4)(x, y))
    with pytest.raises(PatchbenchError, match="forward_at"):
        cls(trained, EPS, 6).forward_at(x, y, at=[7])


def test_a3_objective_is_base_plus_sigma_deviation(trained, test_set):
    """Eq. 12 in ascent form: J_A3 = J_base + σ·mean|Att(x) − g(x_adv)|; σ = 0 is the base attack."""
    x, y = test_set[0][:32], test_set[1][:32]
    plain = PGD(trained, EPS, 3, seed=3)(x, y)
    a3_zero = PGDA3(trained, EPS, 3, seed=3, sigma=0.0, cam=CAM_LAYER)(x, y)
    assert torch.equal(plain, a3_zero)

    attack = A3(StepLL(trained, EPS), sigma=10.0, cam=CAM_LAYER)
    captured = {}
    inner = attack.attack.forward

    def spy(images, labels, objective=None):
        captured["objective"] = objective
        return inner(images, labels, objective=objective)

    attack.attack.forward = spy
    attack(x, y)
    x_probe = (x + 0.05).clamp(0, 1)
    y_ll = trained(x).argmin(1)
    got = captured["objective"](x_probe, y_ll)
    att = attention_area(attack.cam(x, y, upsample=False), "mean")
    g = attack.cam(x_probe, y, upsample=False)
    expected = (-F.cross_entropy(trained(x_probe), y_ll, reduction="none") + 10.0 * (att - g).abs().flatten(1).mean(1)).sum()
    assert torch.allclose(got, expected, atol=1e-5)


def test_a3_deviates_attention_more_than_the_base_attack(trained, test_set):
    x, y = test_set[0][:100], test_set[1][:100]
    attack = PGDA3(trained, EPS, 5, seed=0, sigma=50.0, cam=CAM_LAYER)
    att = attention_area(attack.cam(x, y, upsample=False), "mean")

    def deviation(x_adv):
        return attack.deviation(att, attack.cam(x_adv, y, upsample=False, create_graph=False)).mean()

    assert deviation(attack(x, y)) > deviation(PGD(trained, EPS, 5, seed=0)(x, y))


def test_registry_names():
    for name in PIXEL_ATTACKS:
        assert name in ATTACKS


# --------------------------------------------------------------------------------------------
# localized PGD (AdvML 2019 Algorithm 1): ε as a per-pixel matrix


@pytest.mark.parametrize("region", ["all", "background", "mask"])
@pytest.mark.parametrize("cls", [PGD, CW])
def test_localized_pgd_never_changes_pixels_with_zero_eps(region, cls, trained, test_set):
    from patchbench.attacks.pgd import allowed_pixels

    x, y = test_set
    atk = cls(trained, eps=0.3, steps=5, region=region, keep_box=0.5, mask_threshold=0.2)
    adv = atk(x, y)
    allowed = allowed_pixels(x, region, 0.5, 0.2).expand_as(x).bool()
    assert torch.equal(adv[~allowed], x[~allowed])  # exactly, not approximately
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv[allowed] != x[allowed]).any()  # and the allowed ones do move
    if region == "background":  # the centred box of half the side: a quarter of the pixels kept
        assert allowed[0, 0].float().mean() == pytest.approx(0.75)


def test_region_all_is_standard_pgd(trained, test_set):
    x, y = test_set
    assert torch.equal(PGD(trained, 0.3, steps=5, seed=3)(x, y), PGD(trained, 0.3, steps=5, seed=3, region="all")(x, y))


def test_background_attack_is_never_stronger_than_the_standard_one(trained, test_set):
    """Same model, ε, steps and seed: the background attack searches a subset of the standard ball."""
    x, y = test_set
    full = PGD(trained, 0.15, steps=10, seed=0)(x, y)
    background = PGD(trained, 0.15, steps=10, seed=0, region="background")(x, y)
    assert accuracy(trained, background, y) >= accuracy(trained, full, y)


@pytest.mark.parametrize("kwargs, message", [
    ({"region": "corners"}, "region must be one of"),
    ({"region": "background", "keep_box": 1.5}, "keep_box"),
    ({"region": "mask", "mask_threshold": -0.1}, "mask_threshold"),
])
def test_bad_region_parameters(trained, kwargs, message):
    with pytest.raises(PatchbenchError, match=message):
        PGD(trained, 0.3, **kwargs)
