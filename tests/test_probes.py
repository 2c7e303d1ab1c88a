"""The probes of issue 33 item 4 (patchbench.probes) and the stopping rule: each measurement against
an independent computation (numpy sets, a direct loop, the model's own forward pass) on synthetic
tensors or tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import quadrant_data


def _numpy_topk_iou(g, g_adv, k):
    out = []
    for a, b in zip(g.reshape(len(g), -1), g_adv.reshape(len(g), -1)):
        # the K highest cells, ties to the lower index (numpy's stable argsort of -value)
        sa, sb = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
        out.append(len(sa & sb) / len(sa | sb))
    return np.array(out)


def test_topk_iou_matches_set_arithmetic_with_ties():
    from patchbench.probes.attention import topk_iou

    g = torch.rand(20, 6, 6)
    g[:5] = (g[:5] * 3).round() / 3  # ties
    g_adv = g + 0.3 * torch.rand(20, 6, 6)
    g_adv[-1] = g[-1]  # identical maps: IoU 1
    for k in (1, 5, 10, 36):
        ours = topk_iou(g, g_adv, k).numpy()
        assert np.allclose(ours, _numpy_topk_iou(g.numpy(), g_adv.numpy(), k))
    assert topk_iou(g, g_adv, 5)[-1] == 1 and topk_iou(g, g_adv, 36).eq(1).all()


def test_attention_change_on_a_cam_model_and_training_terms():
    from patchbench.models import build_classifier
    from patchbench.probes.attention import attention_change, training_terms

    torch.manual_seed(0)
    model = build_classifier("lenet", "fashion-mnist", None, 28).eval()
    x = torch.rand(6, 1, 28, 28)
    y = torch.randint(0, 10, (6,))
    same = attention_change(model, x, y, x.clone())
    assert same["iou@5"] == 1 and same["l1"] == 0 and same["cam0"] == same["cam0_adv"]
    other = attention_change(model, x, y, (x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    assert 0 <= other["iou@10"] <= 1 and other["l1"] > 0
    meta = {"train": {"aad_alpha": 0.01, "aad_beta": 0.5}, "history": [{"Lc": 2.0, "Lr": -0.4, "Lp": 0.2, "cam0": 0.1},
                                                                       {"Lc": 1.0, "Lr": -0.6, "Lp": 0.1, "cam0": 0.0}]}
    assert training_terms(meta) == pytest.approx({"Lc": 1.0, "alpha_Lr": -0.006, "beta_Lp": 0.05, "train_cam0": 0.0})
    assert training_terms({"history": [{"Lc": 0.5}]}) == {"Lc": 0.5}


def test_mask_coverage_shares_against_direct_counts():
    from patchbench.attacks.patch import Patch, Placement
    from patchbench.probes.mask_coverage import coverage, patch_region, placements_for

    patch = Patch(torch.rand(1, 4, 4), torch.ones(1, 4, 4), {})
    x = torch.zeros(3, 1, 16, 16)
    region = patch_region(patch, x, Placement("bottom-right", 0))
    assert region.shape == (3, 1, 16, 16) and region[:, :, 12:, 12:].all() and region.sum() == 3 * 16
    mask = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    mask[0, :, 12:, 12:] = True  # the whole patch
    mask[1, :, 12:14, 12:] = True  # half of it
    mask[1, :, :2, :2] = True  # and 4 pixels outside
    c = coverage(mask, region)
    assert c["patch_covered"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert c["outside_masked"] == pytest.approx((4 / 240) / 3)
    assert c["masked"] == pytest.approx((16 + 12) / (3 * 256))
    assert [p.kind for p in placements_for(patch, 16)] == ["top-left", "top-right", "bottom-left", "bottom-right", "center"]
    assert [p.kind for p in placements_for(Patch(torch.rand(1, 10, 10), torch.ones(1, 10, 10), {}), 16)] == ["center"]


def test_dw_mask_coverage_grid_rows():
    from patchbench.attacks.patch import Patch
    from patchbench.probes.mask_coverage import mask_coverage

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 144, 4)).eval()
    x, _ = quadrant_data(8)
    patch = Patch(torch.rand(1, 4, 4), torch.ones(1, 4, 4), {})
    df = mask_coverage("dw", {}, {"threshold": [3.0, 0.0], "erosions": [0]}, net, [patch], x)
    assert list(df["threshold"]) == [3.0, 0.0] and df[["patch_covered", "outside_masked", "masked"]].ge(0).all().all()
    assert df["masked"].iloc[1] >= df["masked"].iloc[0]  # a lower threshold masks at least as much


def test_npixel_drops_equal_attacked_accuracy_and_stop():
    from patchbench.attacks.regions import attacked_accuracy, protocol_regions
    from patchbench.probes.npixel_drop import foolbox_attack, npixel_drops

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4)).eval()
    x, y = quadrant_data(24)
    df = npixel_drops(net, x, y, 12, ns=(1, 4, 36))
    assert list(df["N"]) == [1, 4, 36] and (df["boxes"] == 5).all()
    with torch.no_grad():
        clean = 100 * float((net(x).argmax(1) == y).float().mean())
    direct = 100 * attacked_accuracy(net, x, y, lambda b: foolbox_attack(net, 4, b), protocol_regions(12, 2))
    assert df["clean"].iloc[0] == pytest.approx(clean) and df["attacked"].iloc[1] == pytest.approx(direct)
    assert df["drop_pp"].iloc[1] == pytest.approx(clean - direct)
    first = npixel_drops(net, x, y, 12, ns=(1, 4, 36), stop_at=-1)  # every drop reaches -1 pp: stop after N = 1
    assert list(first["N"]) == [1]


def _tiny_volumetric():
    from patchbench.config import VolumizeConfig
    from patchbench.models import build_classifier

    torch.manual_seed(0)
    return build_classifier("small_vgg", "fashion-mnist", None, 32, volumize=VolumizeConfig(patch=16, metric="mi", inflate="none")).eval()


def test_logits_in_own_order_equal_the_forward_pass_and_a_swap_changes_them():
    from patchbench.probes.volume_order import logits_in_order

    g = _tiny_volumetric()
    x = torch.rand(5, 1, 32, 32)
    order = g.volumizer.order_of(x)
    with torch.no_grad():
        assert torch.allclose(logits_in_order(g, x, order), g(x), atol=1e-6)
        swapped = order.flip(1)
        assert not torch.allclose(logits_in_order(g, x, swapped), g(x), atol=1e-4)


def test_random_pixels_change_n_pixels_inside_the_box():
    from patchbench.probes.volume_order import random_pixels

    x = torch.full((6, 1, 12, 12), 0.5)
    out = random_pixels(x, 3, (2, 4, 5, 6), torch.Generator().manual_seed(1))
    changed = out != x
    assert changed.flatten(1).sum(1).eq(3).all()  # 0.5 -> 0 or 1: every chosen pixel changes
    assert not changed[:, :, :2].any() and not changed[:, :, 7:].any() and not changed[..., :4].any() and not changed[..., 10:].any()
    assert set(out[changed].tolist()) <= {0.0, 1.0}


def test_order_probe_counts_on_a_tiny_volumetric_model():
    from patchbench.probes.volume_order import order_probe

    g = _tiny_volumetric()
    x, y = torch.rand(4, 1, 32, 32), torch.randint(0, 10, (4,))
    out = order_probe(g, x, y, 32, pixels=1, max_pixels=6)
    assert set(out) == {"random_reorder", "attacked", "adv_reordered", "fooled", "frozen"}
    assert all(0 <= out[k] <= 100 for k in ("random_reorder", "attacked", "adv_reordered", "frozen"))


def test_first_plateau_and_held_out_indices():
    from patchbench.data import eval_indices
    from patchbench.runner.stopping import first_plateau, held_out_indices

    assert first_plateau([0.5, 0.4, 0.35]) is None
    assert first_plateau([0.5, 0.4, 0.41, 0.3]) == 3
    assert first_plateau([0.5, 0.5]) == 2
    held = held_out_indices(100, 30, 0, 20)
    assert len(held) == 20 and not set(held.tolist()) & set(eval_indices(100, 30, 0).tolist())
    assert held.tolist() == sorted(held.tolist())


def test_lgs_factor_counts_a_flat_patch_as_kept_and_a_checkerboard_as_zeroed():
    """ICAART Eq. 5's factor clip(1 − λ·g, 0, 1) over a patch's pixels: a flat patch on a flat image, away from
    the image's zero-padded border, has no local gradient (factor 1), a full-contrast checkerboard the largest
    (zeroed), against a direct evaluation of LGS's own g on the same pasted images."""
    from patchbench.attacks.patch import Patch
    from patchbench.defenses import build_defense
    from patchbench.probes.lgs_factor import lgs_factor

    lgs = build_defense("lgs", {"window": 5, "overlap": 2, "threshold": 0.2, "space": "pixel"})
    x = torch.full((4, 1, 32, 32), 0.5)
    board = (torch.arange(10)[:, None] // 2 + torch.arange(10)[None, :] // 2) % 2  # 2 px squares (Sobel cancels on 1 px)
    flat, checker = (Patch(p[None].float(), torch.ones(1, 10, 10), {"placement": "center", "margin": 0})
                     for p in (torch.full((10, 10), 0.5), board))
    kept, zeroed = lgs_factor(lgs, x, flat, 2.3), lgs_factor(lgs, x, checker, 2.3)
    assert kept["patch_factor"] == pytest.approx(1.0) and kept["patch_zeroed"] == 0 and kept["rest_factor"] < 1  # the border
    g = lgs.maps(checker.apply(x))["g"][:, :, 11:21, 11:21]  # centred: (32 - 10) // 2 = 11
    want = (1 - 2.3 * g).clamp(0, 1)
    assert zeroed["patch_factor"] == pytest.approx(float(want.mean()), abs=1e-6) and zeroed["patch_zeroed"] > 0.5
