"""SLGS / WLGS (ICAART 2022 Eq. 6-12): mask vs scikit-image, weights, saliency invariances."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from skimage.morphology import binary_dilation, binary_erosion

from patchbench.defenses import build_defense
from patchbench.defenses.lgs import LGS, gradient_map
from patchbench.defenses.slgs import SLGS, saliency_mask
from patchbench.defenses.wlgs import WLGS
from patchbench.defenses.saliency import saliency_map, topk_cross_entropy
from patchbench.errors import PatchbenchError
from patchbench.models.wrapper import Classifier


def tiny_model(channels=3, classes=10, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, classes))
    model = Classifier(net, [0.5] * channels, [0.25] * channels, "tiny", [str(i) for i in range(classes)])
    return model.eval().requires_grad_(False)


def skimage_mask(sal: np.ndarray, erosions: int, dilations: int) -> np.ndarray:
    mask = sal >= sal.mean()
    footprint = np.ones((3, 3), dtype=bool)
    for _ in range(erosions):
        mask = binary_erosion(mask, footprint)
    for _ in range(dilations):
        mask = binary_dilation(mask, footprint)
    return mask


@pytest.mark.filterwarnings("ignore:`binary_:FutureWarning")  # the reference the issue names
@pytest.mark.parametrize("shape", [(24, 24), (31, 40), (64, 64)])
@pytest.mark.parametrize("erosions,dilations", [(2, 3), (1, 3), (0, 1), (3, 0)])
def test_mask_equals_skimage_morphology(shape, erosions, dilations):
    gen = torch.Generator().manual_seed(hash((shape, erosions, dilations)) % 2**31)
    # smooth blobs plus speckle, so the masks have both solid regions and isolated pixels
    base = torch.rand(4, 1, shape[0] // 4 + 1, shape[1] // 4 + 1, generator=gen)
    sal = torch.nn.functional.interpolate(base, size=shape, mode="bilinear", align_corners=False)
    sal = sal + 0.3 * torch.rand(4, 1, *shape, generator=gen)
    ours = saliency_mask(sal, erosions, dilations)
    assert set(ours.unique().tolist()) <= {0.0, 1.0}
    for i in range(4):
        ref = skimage_mask(sal[i, 0].numpy(), erosions, dilations)
        np.testing.assert_array_equal(ours[i, 0].numpy().astype(bool), ref)
    assert 0 < ours.mean() < 1  # the test exercises both values


def test_saliency_is_batch_invariant_and_matches_definition():
    model = tiny_model()
    x = torch.rand(5, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    full = saliency_map(model, x)
    assert full.shape == (5, 1, 20, 20) and (full >= 0).all()
    for i in range(5):
        torch.testing.assert_close(saliency_map(model, x[i:i + 1]), full[i:i + 1], atol=1e-6, rtol=1e-5)
    # Eq. 6 by hand for one image: gradient of the sum of the top-5 cross entropies, max over channels
    xi = x[:1].clone().requires_grad_(True)
    logits = model(xi)
    top = logits.topk(5).indices[0]
    s = sum(torch.nn.functional.cross_entropy(logits, top[j:j + 1]) for j in range(5))
    (g,) = torch.autograd.grad(s, xi)
    torch.testing.assert_close(full[:1], g.abs().amax(1, keepdim=True), atol=1e-6, rtol=1e-5)
    # topk_cross_entropy caps k at the number of classes
    assert topk_cross_entropy(torch.zeros(2, 3), k=5).shape == (2,)


def test_saliency_leaves_input_graph_alone():
    model = tiny_model()
    x = torch.rand(2, 3, 16, 16)
    saliency_map(model, x)
    assert not x.requires_grad and x.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_wlgs_weight_in_unit_interval_and_defense_bounds():
    model = tiny_model()
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    w = WLGS(window=5, overlap=2)
    maps = w.maps(x, model)
    assert maps["weight"].min() >= 0 and maps["weight"].max() <= 1
    assert torch.isclose(maps["weight"].flatten(1).amax(1), torch.ones(3)).all()
    g_lgs = gradient_map(x, 5, 2, 0.2)
    assert (maps["g"] <= g_lgs + 1e-7).all()  # W ∈ [0, 1] only removes smoothing
    for lam in (0.0, 1.5, 100.0):
        out = w.apply(x, maps, lam)
        assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(w.apply(x, maps, 0.0), x)


def test_slgs_is_lgs_restricted_to_the_mask():
    model = tiny_model()
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    s = SLGS(window=5, overlap=2, erosions=1, dilations=3)
    maps = s.maps(x, model)
    lgs = LGS(window=5, overlap=2)
    lam = 2.3
    ref_lgs = lgs(x, lam)
    out = s.apply(x, maps, lam)
    inside = maps["mask"].expand_as(x) > 0
    torch.testing.assert_close(out[inside], ref_lgs[inside])
    torch.testing.assert_close(out[~inside], x[~inside])


@pytest.mark.parametrize("name", ["slgs", "wlgs"])
def test_saliency_defenses_batch_invariant_normalized_space(name):
    model = tiny_model()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    d = build_defense(name, {"window": 5, "overlap": 2, "space": "normalized"}, model)
    full = d(x, 2.3, model)
    for i in range(4):
        torch.testing.assert_close(d(x[i:i + 1], 2.3, model), full[i:i + 1], atol=1e-6, rtol=1e-5)
    assert full.min() >= 0 and full.max() <= 1


def test_bad_parameters_and_missing_model():
    with pytest.raises(PatchbenchError, match="erosions"):
        build_defense("slgs", {"erosions": -1})
    with pytest.raises(PatchbenchError, match="top_k"):
        build_defense("wlgs", {"top_k": 0})
    with pytest.raises(PatchbenchError, match="classifier"):
        SLGS().maps(torch.rand(1, 3, 20, 20), None)
