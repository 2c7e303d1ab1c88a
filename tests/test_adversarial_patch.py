"""Adversarial Patch (Brown et al. 2017; ICAART Eq. 2): EoT placement and the targeted loss."""

import pytest
import torch
import torch.nn.functional as F

from patchbench.attacks import ATTACKS, AdversarialPatch
from patchbench.attacks.adversarial_patch import eot_paste
from patchbench.attacks.patch import Placement, paste
from patchbench.config import AttackConfig
from conftest import corner_model


def test_eot_identity_transform_equals_exact_paste():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 24, 30, generator=gen)
    delta = torch.rand(3, 7, 7, generator=gen)
    mask = torch.ones(1, 7, 7)
    top, left = torch.tensor([0, 3, 17, 5, 9]), torch.tensor([0, 23, 11, 2, 14])
    ref = paste(x, delta, mask, top, left)
    out = eot_paste(x, delta, mask, torch.zeros(5), torch.ones(5), top.float(), left.float())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_eot_rotation_by_90_degrees_is_rot90_and_scale_grows_the_area():
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(2, 1, 21, 21)
    delta = torch.rand(1, 7, 7, generator=gen)
    mask = torch.ones(1, 7, 7)
    out = eot_paste(x, delta, mask, torch.tensor([90.0, -90.0]), torch.ones(2), torch.full((2,), 7.0), torch.full((2,), 7.0))
    region = out[:, 0, 7:14, 7:14]
    rots = [torch.rot90(delta[0], k) for k in (1, 3)]
    assert min((region[0] - r).abs().max() for r in rots) < 1e-4
    assert min((region[1] - r).abs().max() for r in rots) < 1e-4
    assert (region[0] - region[1]).abs().max() > 1e-2  # +90 and -90 differ
    big = eot_paste(x[:1], torch.ones(1, 7, 7), mask, torch.zeros(1), torch.tensor([2.0]), torch.tensor([7.0]), torch.tensor([7.0]))
    assert 4 * 49 * 0.8 < float(big.sum()) < 4 * 49 * 1.2


def test_eot_is_differentiable_in_the_patch():
    """The pasted image is linear in the patch (fixed mask and transform), so the gradient of any
    weighted sum of it is exact: f(δ + v) - f(δ) = <∇f, v>, and it is non-zero (the patch shows)."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64), torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64)
    args = (torch.ones(1, 5, 5, dtype=torch.float64), torch.tensor([30.0, -10.0]), torch.tensor([0.8, 1.3]),
            torch.tensor([4.0, 8.0]), torch.tensor([6.0, 2.0]))

    def f(delta):
        return (eot_paste(x, delta, *args) * w).sum()

    delta = torch.rand(3, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    f(delta).backward()
    v = torch.randn(3, 5, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        assert float(f(delta + v) - f(delta)) == pytest.approx(float((delta.grad * v).sum()), rel=1e-6)
    assert delta.grad.abs().min() > 0  # every patch pixel lands somewhere in some image


def test_adversarial_patch_log_prob_loss_and_target_reached_under_eot():
    model = corner_model(target=2, size=16)
    x = torch.rand(64, 1, 16, 16) * 0.3
    y = torch.zeros(64, dtype=torch.long)
    atk = AdversarialPatch(model, size=6, target=2, placement=Placement("top-right", 0), image_size=16,
                           rotation=20, scale_range=(0.9, 1.1), steps=60, lr=0.5, seed=0, progress=False)
    logits = torch.randn(4, 3)
    torch.testing.assert_close(atk.loss(logits, y[:4]), -F.log_softmax(logits, 1)[:, 2].mean())
    patch = atk.fit(iter([(x, y)] * 60), channels=1)
    assert patch.meta["attack"] == "adversarial_patch" and patch.meta["rotation"] == 20
    assert 0 <= patch.pixels.min() and patch.pixels.max() <= 1
    assert atk.success_rate([(x, y)]) > 0.9


def test_from_config_carries_eot_parameters():
    cfg = AttackConfig(name="adversarial_patch", sizes=[6], target=1, rotation=15, scale_range=[0.8, 1.2],
                       random_placement=True, steps=3)
    atk = ATTACKS["adversarial_patch"].from_config(corner_model(), cfg, 16, progress=False)
    assert atk.rotation == 15 and atk.scale_range == (0.8, 1.2) and atk.random_placement
    x = torch.rand(8, 1, 16, 16)
    out = atk.training_images(x, torch.ones(1, 6, 6), torch.ones(1, 6, 6), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert ((out - x).abs().flatten(1).amax(1) > 0).all()  # every image got a patch
