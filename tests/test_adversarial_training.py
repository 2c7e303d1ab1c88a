"""The one training loop (patchbench.training): every objective, resume, robustness, optimizers."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks import PGD
from patchbench.config import TrainConfig
from patchbench.training.checks import validate_train
from patchbench.presets import load_preset
from patchbench.data import TensorImages
from patchbench.errors import PatchbenchError
from patchbench.models.gradcam import GradCAM
from patchbench.models import Classifier
from patchbench.training import train as train_adversarial
from patchbench.training.loop import build_optimizer, build_schedule
from patchbench.training.objectives import (
    build_objective, classification_loss, logit_pairing_loss, minibatch_loss, preservation_loss, rectification_distance,
)
from conftest import quadrant_data as float_quadrant_data

CAM_LAYER = "net.4"
MODES = ["raw", "madry", "madry+aad", "alp", "alp+aad"]


pytestmark = pytest.mark.usefixtures("one_thread")


def quadrant_data(n, size=12, seed=0, amp=0.5):
    """conftest's quadrant images as uint8, like the datasets."""
    x, y = float_quadrant_data(n, size, seed, amp)
    return (x * 255).round().to(torch.uint8), y


def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Dropout(0.2), nn.Linear(64, 4))
    return Classifier(net, (0.5,), (0.25,), "tiny", list("abcd"))


def config(**over):
    base = dict(epochs=1, batch_size=16, lr=3e-3, schedule="constant", eps=0.2, attack_steps=2)
    return TrainConfig(**{**base, **over})


@pytest.fixture(scope="module")
def source():
    return TensorImages(*quadrant_data(1000))


@pytest.mark.parametrize("class_loss", ["soft-margin", "ce"])
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_runs_with_finite_terms(mode, class_loss, source):
    model = tiny_net()
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_adversarial(model, source, torch.arange(48), 12, config(training=mode, class_loss=class_loss),
                              torch.device("cpu"), progress=False, cam=CAM_LAYER)
    assert stats["steps"] == 3 and stats["training"] == mode
    expected = {"Lc"} | ({"pair"} if mode.startswith("alp") else set()) | ({"Lr", "Lp", "cam0"} if mode.endswith("aad") else set())
    assert set(stats["final_terms"]) == expected
    assert all(math.isfinite(v) for v in stats["final_terms"].values())
    assert stats["final_terms"].get("Lr", -1) <= 0 and stats["final_terms"].get("Lp", 0) >= 0
    assert not model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_loss_terms_by_hand(source):
    """Madry's loss is L_c on PGD examples; ALP mixes clean and adversarial 50/50 plus λ·pairing."""
    model = tiny_net().eval()  # eval: no dropout, so the forwards below see the same network
    x, y = source.batch(torch.arange(16), 12, torch.device("cpu")), source.labels[:16]
    cfg = config(training="alp", class_loss="ce", alp_weight=0.5)
    attack = PGD(model, cfg.eps, cfg.attack_steps, seed=5)
    loss, terms = minibatch_loss(model, build_objective(cfg.training), x, y, cfg, attack, None)
    x_adv = PGD(model, cfg.eps, cfg.attack_steps, seed=5)(x, y)
    z, z_adv = model(x), model(x_adv)
    expected = 0.5 * F.cross_entropy(z, y) + 0.5 * F.cross_entropy(z_adv, y) + 0.5 * (z - z_adv).pow(2).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert terms["pair"] == pytest.approx(float(logit_pairing_loss(z, z_adv).detach()), rel=1e-5)
    one_hot = F.one_hot(y, 4).float()
    manual = -(one_hot * F.logsigmoid(z) + (1 - one_hot) * F.logsigmoid(-z)).mean()
    assert torch.allclose(classification_loss(z, y, "soft-margin"), manual, atol=1e-6)


@pytest.mark.parametrize("term", ["Lr", "Lp", "Lp-sum"])
def test_aad_terms_reach_the_weights(term, source):
    """L_r (through f(x), f(x^m)) and L_p (through the Grad-CAM maps, create_graph) each give
    finite, non-zero gradients on the conv below the CAM layer and on the classifier head."""
    model = tiny_net().train()
    x, y = source.batch(torch.arange(16), 12, torch.device("cpu")), source.labels[:16]
    cam = GradCAM(model, CAM_LAYER, normalize=True)
    x_adv = PGD(model, 0.2, 2, seed=0)(x, y)
    g, z = cam.compute(x, y, create_graph=True, upsample=False)
    g_adv, z_adv = cam.compute(x_adv, y, create_graph=True, upsample=False)
    if term == "Lp-sum":
        loss = preservation_loss(g, g_adv, "sum")
    elif term == "Lr":
        loss = -(rectification_distance(model, x, z, g, "mean") + rectification_distance(model, x_adv, z_adv, g_adv, "mean")).mean()
    else:
        loss = preservation_loss(g, g_adv)
    loss.backward()
    for p in (model.net[0].weight, model.net[-1].weight):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_checkpoint_resume_equals_uninterrupted_run(source, tmp_path):
    cfg = config(training="madry+aad", epochs=2, batch_size=25, attack_steps=2)
    idx = torch.arange(100)
    full = tiny_net(seed=1)
    train_adversarial(full, source, idx, 12, cfg, torch.device("cpu"), progress=False, cam=CAM_LAYER)

    ckpt = tmp_path / "ckpt" / "train.pt"
    first = tiny_net(seed=1)
    train_adversarial(first, source, idx, 12, config(**{**cfg.__dict__, "epochs": 1}), torch.device("cpu"),
                      progress=False, checkpoint=ckpt, cam=CAM_LAYER)
    assert ckpt.exists() and not list(ckpt.parent.glob("*.tmp"))
    resumed = tiny_net(seed=99)  # a different init: the checkpoint's weights must win
    stats = train_adversarial(resumed, source, idx, 12, cfg, torch.device("cpu"), progress=False,
                              checkpoint=ckpt, cam=CAM_LAYER)
    assert stats["resumed_from_epoch"] == 1 and stats["steps"] == 4
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    # a finished checkpoint: nothing left to train, the stored weights come back
    again = tiny_net(seed=5)
    stats = train_adversarial(again, source, idx, 12, cfg, torch.device("cpu"), progress=False, checkpoint=ckpt, cam=CAM_LAYER)
    assert stats["steps"] == 0 and torch.equal(again.net[0].weight, full.net[0].weight)
    # another config is refused
    with pytest.raises(PatchbenchError, match="another training config"):
        train_adversarial(tiny_net(), source, idx, 12, config(**{**cfg.__dict__, "eps": 0.1}), torch.device("cpu"),
                          progress=False, checkpoint=ckpt, cam=CAM_LAYER)


def test_training_does_not_touch_the_callers_rng(source):
    model = tiny_net()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_adversarial(model, source, torch.arange(32), 12, config(training="madry"), torch.device("cpu"), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_madry_training_is_more_robust_than_raw(source):
    test_x, test_y = quadrant_data(400, seed=1)
    test_x = test_x.float() / 255
    acc = {}
    for mode in ("raw", "madry"):
        model = tiny_net()
        cfg = config(training=mode, epochs=3, batch_size=50, attack_steps=5, class_loss="ce")
        train_adversarial(model, source, torch.arange(1000), 12, cfg, torch.device("cpu"), progress=False)
        with torch.no_grad():
            clean = (model(test_x).argmax(1) == test_y).float().mean().item()
        adv = PGD(model, 0.2, 10, seed=0)(test_x, test_y)
        with torch.no_grad():
            acc[mode] = (clean, (model(adv).argmax(1) == test_y).float().mean().item())
    assert acc["raw"][0] > 0.95 and acc["madry"][0] > 0.95
    assert acc["madry"][1] > acc["raw"][1] + 0.15, acc


def test_step_schedule_and_rmsprop():
    params = [nn.Parameter(torch.zeros(1))]
    cfg = TrainConfig(optimizer="rmsprop", lr=0.045, schedule="step", lr_decay=0.94, lr_decay_every=2, epochs=6)
    opt = build_optimizer(params, cfg)
    sched, per_batch = build_schedule(opt, cfg, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.RMSprop) and not per_batch
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.045, 0.045, 0.045 * 0.94, 0.045 * 0.94, 0.045 * 0.94 ** 2, 0.045 * 0.94 ** 2])


@pytest.mark.parametrize("over,key", [
    ({"training": "trades"}, "training"), ({"eps": 0}, "eps"), ({"eps": 8}, "eps"), ({"attack_steps": 0}, "attack_steps"),
    ({"attack_step_size": -1.0}, "attack_step_size"), ({"alp_weight": -0.5}, "alp_weight"), ({"aad_alpha": math.nan}, "aad_alpha"),
    ({"aad_beta": -1}, "aad_beta"), ({"aad_lp_reduction": "max"}, "aad_lp_reduction"), ({"class_loss": "hinge"}, "class_loss"), ({"kappa": "max"}, "kappa"),
    ({"optimizer": "lamb"}, "optimizer"), ({"schedule": "cosine"}, "schedule"), ({"lr_decay": 1.5}, "lr_decay"),
    ({"lr_decay_every": 0}, "lr_decay_every"), ({"lr": 0}, "lr"), ({"epochs": -1}, "epochs"),
])
def test_bad_train_config(over, key):
    with pytest.raises(PatchbenchError, match=key):
        validate_train(TrainConfig(**over))
    with pytest.raises(PatchbenchError, match=key):
        train_adversarial(tiny_net(), None, torch.arange(4), 12, TrainConfig(**over), torch.device("cpu"), progress=False)


@pytest.mark.parametrize("training", ["raw", "madry"])
def test_optimizer_and_step_schedule_reach_every_objective(training, source):
    """optimizer: rmsprop and schedule: step are honoured by every objective (the ERM path used
    to train with its own Adam and ignore both)."""
    cfg = config(training=training, optimizer="rmsprop", schedule="step", lr=0.01, lr_decay=0.5, lr_decay_every=1,
                 epochs=2, batch_size=16)
    stats = train_adversarial(tiny_net(), source, torch.arange(32), 12, cfg, torch.device("cpu"), progress=False)
    assert stats["optimizer"] == "RMSprop"
    assert stats["final_lr"] == pytest.approx(0.01 * 0.5 ** 2)


def test_preset_override_is_validated():
    p = load_preset("demo-fmnist", ["model.train.training=madry+aad", "model.train.eps=0.1", "model.train.kappa=0.5"])
    assert p.model.train.training == "madry+aad" and p.model.train.eps == 0.1
    with pytest.raises(PatchbenchError, match="model.train.training"):
        load_preset("demo-fmnist", ["model.train.training=trades"])
