"""3-D counterparts of 2-D classifiers (BMVC 2023 Sec. 4.2, Eq. 5-9): shapes, parameter counts,
equality with the untouched 2-D net applied patch by patch, patch (in)dependence, aggregation."""

import re

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.errors import PatchbenchError
from patchbench.models import MODELS
from patchbench.models.volumetric import (
    PAPER_PARAMETER_INCREASE, PatchPool3d, VolumetricNet, aggregate, build_2d, parameter_increase, to_volumetric,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Convolutions on a shared 2-core machine: one thread is several times faster than two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def per_patch_2d(net2d: nn.Module, volume: torch.Tensor) -> torch.Tensor:
    """The reference: the untouched 2-D net on every patch separately, (B, C, N, h, w) -> (B, N, k)."""
    b, c, n, h, w = volume.shape
    out = net2d(volume.transpose(1, 2).reshape(b * n, c, h, w))
    return out.reshape(b, n, -1)


def random_weights(meta_net: nn.Module) -> nn.Module:
    """A net built on the meta device, on the CPU with random parameters and default batch-norm statistics: the
    values only have to be finite, and torchvision's own initialisation of VGG16 (138 M parameters) takes 3 s. Each
    parameter repeats one block of 4099 uniform values (a prime: rows and channels do not line up): drawing
    VGG16's 102 M-parameter first linear layer value by value took 1 s on one core, copying a tiled block 0.1 s."""
    net = meta_net.to_empty(device="cpu")
    block = torch.empty(4099).uniform_(-0.05, 0.05, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in net.parameters():
            flat, whole = p.view(-1), p.numel() // len(block) * len(block)
            flat[:whole].view(-1, len(block)).copy_(block.expand(whole // len(block), -1))
            flat[whole:].copy_(block[: p.numel() - whole])
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return net


def conv_weights(net2d: nn.Module) -> int:
    return sum(m.weight.numel() for m in net2d.modules() if isinstance(m, nn.Conv2d))


def randomize_bn_stats(net: nn.Module) -> None:
    """Non-trivial running statistics so an eval-mode comparison tests them."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


class TinyNet(nn.Module):
    """conv(bias)/bn/max-pool/functional avg-pool/linear head with torch.flatten: the rewrite of
    modules and of functional calls."""

    def __init__(self, cin=2, k=5):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 2 * 2, 12)
        self.fc2 = nn.Linear(12, k)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = F.avg_pool2d(F.relu(self.bn2(self.conv2(x))), kernel_size=2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


# --------------------------------------------------------------------------------------------
# every architecture converts, runs and is counted


@pytest.mark.parametrize("arch", ["vgg16", "resnet50", "inception_v3", "efficientnet_b0", "small_vgg"])
def test_conversion_runs_and_parameters_are_counted(arch):
    torch.manual_seed(0)
    cin = 1 if arch == "small_vgg" else 3
    if arch == "small_vgg":
        net, _ = MODELS["small_vgg"].build(num_classes=10, in_channels=1)
    else:
        net = random_weights(build_2d(arch, num_classes=10))  # torchvision's net (Inception-v3 without aux)
    g = to_volumetric(net, (16, 16), cin).eval()
    with torch.no_grad():
        out = g(torch.rand(2, cin, 3, 16, 16))
    assert isinstance(g, VolumetricNet) and out.shape == (2, 3, 10) and torch.isfinite(out).all()
    p2, p3, inc = parameter_increase(arch, 3, (16, 16), cin, 10)
    assert p2 == sum(p.numel() for p in net.parameters())
    assert p3 == sum(p.numel() for p in g.parameters())
    # independent count: a depth-3 kernel triples every conv kernel; biases, BN and the head are unchanged
    assert inc == p3 - p2 == 2 * conv_weights(net)
    if arch == "vgg16":  # 16 -> 8 -> 4 -> 2 -> 1: only the fifth pooling is changed (to a 1×1 window)
        assert len(g.adjustments) == 1 and g.adjustments[0].startswith("features.30: MaxPool2d")
    if arch == "inception_v3":  # the unpadded stem conv is padded
        assert any(a.startswith("Conv2d_4a_3x3.conv") for a in g.adjustments)
    if arch in ("resnet50", "efficientnet_b0", "small_vgg"):
        assert g.adjustments == []


@pytest.mark.xdist_group("parameter_increase")  # with `list volumetric`'s test: the same counts, counted once
def test_parameter_increase_table_and_paper_numbers():
    assert set(PAPER_PARAMETER_INCREASE) == {"vgg16", "resnet50", "inception_v3", "efficientnet_b0"}
    weights = {arch: conv_weights(build_2d(arch)) for arch in PAPER_PARAMETER_INCREASE}
    errors = {1: 4.0}  # d = 1 adds nothing: relative error 1 for each of the four
    assert parameter_increase("efficientnet_b0", 1)[2] == 0
    for d in (2, 3, 4):
        errors[d] = 0.0
        for arch, paper in PAPER_PARAMETER_INCREASE.items():
            inc = parameter_increase(arch, d, (16, 16), 3, 1000)[2]  # as `patchbench list volumetric` counts them
            assert inc == (d - 1) * weights[arch]
            errors[d] += abs(inc - paper) / paper
    assert min(errors, key=errors.get) == 3  # the documented default (d >= 5 only moves further away)
    assert errors[3] < 0.75 and errors[2] > 1.9 and errors[4] > 2.1
    assert parameter_increase("resnet50", 3, num_classes=1000)[2] == parameter_increase("resnet50", 3)[2]


def test_inception_aux_branch_is_dropped_and_stochastic_depth_kept():
    import torchvision
    from torchvision.ops import StochasticDepth

    with torch.device("meta"):
        inc = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=10)
    g = to_volumetric(inc, 16, 3)
    assert g.dropped and all(name.startswith("AuxLogits") for name in g.dropped)
    assert g(torch.zeros(2, 3, 4, 16, 16, device="meta")).shape == (2, 4, 10)
    assert inc.training and g.training  # the mode is kept
    g = to_volumetric(build_2d("efficientnet_b0"), 16, 3)
    assert any(isinstance(m, StochasticDepth) for m in g.modules())


# --------------------------------------------------------------------------------------------
# inflate="center": g equals f applied to each patch


@pytest.mark.parametrize("depth_kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("train", [False, True])
def test_center_inflation_equals_2d_net_per_patch_small_vgg(depth_kernel, train):
    torch.manual_seed(depth_kernel)
    net, _ = MODELS["small_vgg"].build(num_classes=10, in_channels=1)
    net = net.double()
    randomize_bn_stats(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = to_volumetric(net, (16, 16), 1, depth_kernel=depth_kernel, inflate="center")
    assert g.adjustments == []  # 16 -> 8 -> 4 -> 2: no stride changes
    g.train(train)
    net.train(train)
    x = torch.rand(3, 1, 5, 16, 16, dtype=torch.float64)
    out = g(x)
    for k, v in net.state_dict().items():  # conversion left f alone
        assert torch.equal(v, before[k])
    ref = per_patch_2d(net, x)
    assert out.shape == (3, 5, 10)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    if train:  # BatchNorm3d's batch statistics over (B, N, h, w) updated like BatchNorm2d's over (B·N, h, w)
        sd = g.body.state_dict()
        for k, v in net.state_dict().items():
            if "running" in k:
                torch.testing.assert_close(sd[k], v)


@pytest.mark.parametrize("arch", ["tiny", "mini_inception", "efficientnet_b0"])
def test_center_inflation_equals_2d_net_per_patch_other_nets(arch):
    torch.manual_seed(3)
    if arch == "tiny":
        net, cin, ps = TinyNet(cin=2), 2, (8, 8)
    elif arch == "mini_inception":  # parallel branches, AvgPool2d(3, 1, 1), torch.cat on channels
        net, cin, ps = MODELS["mini_inception"].build(num_classes=10, in_channels=1)[0], 1, (16, 16)
    else:  # squeeze-excitation must pool per patch
        net, cin, ps = build_2d("efficientnet_b0", device="cpu"), 3, (16, 16)
    net = net.double().eval()
    randomize_bn_stats(net)
    g = to_volumetric(net, ps, cin, depth_kernel=3).eval()
    assert g.adjustments == []
    x = torch.rand(2, cin, 4, *ps, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(g(x), per_patch_2d(net, x), rtol=1e-9, atol=1e-9)
    # g owns its weights: training g does not change f
    f_params = {p.data_ptr() for p in net.parameters()}
    assert not any(p.data_ptr() in f_params for p in g.parameters())


def test_stride_rule_matches_a_2d_net_with_the_same_rule():
    """4×4 patches: conv s2 -> 2×2, pool -> 1×1, the second pool can only be a 1×1 window and the
    unpadded 3×3 conv needs padding 1. The reference is the 2-D net with those changes made by hand."""
    torch.manual_seed(4)
    c1, c2, fc = nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.Conv2d(4, 5, 3), nn.Linear(5, 3)
    net = nn.Sequential(c1, nn.ReLU(), nn.MaxPool2d(2), nn.MaxPool2d(2), c2, nn.AdaptiveMaxPool2d(1), nn.Flatten(), fc).double()
    g = to_volumetric(net, 4, 1, depth_kernel=3)
    assert len(g.adjustments) == 2 and g.adjustments[0].startswith("3: MaxPool2d") and g.adjustments[1].startswith("4: Conv2d")
    c2_same = nn.Conv2d(4, 5, 3, padding=1).double()
    c2_same.load_state_dict(c2.state_dict())
    ref_net = nn.Sequential(c1, nn.ReLU(), nn.MaxPool2d(2), nn.Identity(), c2_same, nn.AdaptiveMaxPool2d(1), nn.Flatten(), fc)
    x = torch.rand(2, 1, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(g(x), per_patch_2d(ref_net, x))
    # min_spatial=2 keeps 2×2 maps: the first pool too becomes a 1×1 window
    g2 = to_volumetric(net, 4, 1, min_spatial=2)
    assert [a.split(":")[0] for a in g2.adjustments] == ["2", "3", "4"]
    ref_net2 = nn.Sequential(c1, nn.ReLU(), nn.Identity(), nn.Identity(), c2_same, nn.AdaptiveMaxPool2d(1), nn.Flatten(), fc)
    torch.testing.assert_close(g2(x), per_patch_2d(ref_net2, x))


# --------------------------------------------------------------------------------------------
# patch (in)dependence


def changed_outputs(g: nn.Module, j: int, n: int = 6) -> list[int]:
    torch.manual_seed(5)
    x = torch.rand(2, 1, n, 16, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, :, j] = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        diff = (g(x) - g(x2)).abs().amax(dim=(0, 2))
    return [i for i in range(n) if diff[i] > 1e-9]


def small_vgg(**kw):
    torch.manual_seed(6)
    net, _ = MODELS["small_vgg"].build(num_classes=10, in_channels=1)
    return to_volumetric(net.double(), 16, 1, **kw).eval()


def test_depth_kernel_1_processes_patches_independently():
    for inflate in ("center", "repeat", "none"):
        assert changed_outputs(small_vgg(depth_kernel=1, inflate=inflate), 2) == [2]


def test_depth_kernel_3_and_depth_pool_mix_neighbouring_patches():
    # 4 depth-3 convs: patch 2 reaches outputs 0..5 (receptive field ±4); center inflation starts as f
    assert changed_outputs(small_vgg(depth_kernel=3, inflate="none"), 2) == [0, 1, 2, 3, 4, 5]
    assert changed_outputs(small_vgg(depth_kernel=3, inflate="repeat"), 0) == [0, 1, 2, 3, 4]
    assert changed_outputs(small_vgg(depth_kernel=3, inflate="center"), 2) == [2]
    # two depth-3 poolings, per-patch convs: ±2
    assert changed_outputs(small_vgg(depth_kernel=1, depth_pool=3), 3) == [1, 2, 3, 4, 5]
    # an even depth kernel keeps N and looks one patch further ahead than back
    g = small_vgg(depth_kernel=2, inflate="none")
    assert g(torch.rand(1, 1, 6, 16, 16, dtype=torch.float64)).shape == (1, 6, 10)
    assert changed_outputs(g, 5) == [1, 2, 3, 4, 5]


def test_depth_pool_above_1_mixes_neighbouring_patches_and_1_does_not():
    """Eq. 9's depth window (the BMVC presets use depth_pool 3): changing one patch changes the pooled
    features of its neighbours in the volume only when the window is deeper than 1 — in the pooling
    layer itself and in whole nets where nothing else mixes patches (per-patch convolutions, or
    center-inflated depth-3 kernels, which start as f on every patch)."""
    torch.manual_seed(8)
    x = torch.rand(2, 3, 5, 6, 6, dtype=torch.float64)
    x2 = x.clone()
    x2[:, :, 2] += 1.0  # patch 2 brighter everywhere: every window holding it changes
    for mode in ("max", "avg"):
        for depth, reached in ((1, [2]), (3, [1, 2, 3]), (5, [0, 1, 2, 3, 4])):
            pool = PatchPool3d(mode, 2, 2, 0, depth=depth)
            diff = (pool(x) - pool(x2)).abs().amax(dim=(0, 1, 3, 4))
            assert [i for i in range(5) if diff[i] > 1e-12] == reached, (mode, depth)
    # small_vgg (two poolings): patch 3's change reaches its own logits only, or its neighbours' within ±2
    assert changed_outputs(small_vgg(depth_kernel=1, depth_pool=1), 3) == [3]
    assert changed_outputs(small_vgg(depth_kernel=1, depth_pool=3), 3) == [1, 2, 3, 4, 5]
    assert changed_outputs(small_vgg(depth_kernel=3, inflate="center", depth_pool=1), 3) == [3]
    assert changed_outputs(small_vgg(depth_kernel=3, inflate="center", depth_pool=3), 3) == [1, 2, 3, 4, 5]


def test_depth_pool_reaches_every_fixed_window_pooling_from_the_preset():
    """``model.volumize.depth_pool`` (a preset's) is the depth of every 3-D pooling of g built through
    the registry; adaptive (global) pooling stays per patch, so EfficientNet-B0, whose only poolings
    are adaptive, has no layer that depth_pool changes."""
    from patchbench.config import VolumizeConfig
    from patchbench.models import build_classifier

    for depth in (1, 3):
        model = build_classifier("small_vgg", "fashion-mnist", None, 32,
                                 volumize=VolumizeConfig(patch=16, metric="mi", depth_pool=depth))
        pools = [m for m in model.modules() if isinstance(m, PatchPool3d)]
        assert len(pools) == 2 and all(m.depth == depth for m in pools)
    g = to_volumetric(build_2d("efficientnet_b0"), 16, 3, depth_pool=3, inflate="none")
    assert not any(isinstance(m, PatchPool3d) for m in g.modules())


def test_patch_pool3d_matches_torch_3d_pooling():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 5, 9, 9, dtype=torch.float64)
    cases = [
        (PatchPool3d("max", 3, 2, 1, depth=3), F.max_pool3d(x, 3, (1, 2, 2), 1)),
        (PatchPool3d("max", 3, 2, 1, dilation=1, ceil_mode=True, depth=1), F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1), ceil_mode=True)),
        (PatchPool3d("avg", 3, 1, 1, depth=3), F.avg_pool3d(x, 3, 1, 1)),
        (PatchPool3d("avg", 3, 2, 1, count_include_pad=False, depth=5), F.avg_pool3d(x, (5, 3, 3), (1, 2, 2), (2, 1, 1), count_include_pad=False)),
        (PatchPool3d("avg", 2, 2, 0, divisor_override=3, depth=3), F.avg_pool3d(x, (3, 2, 2), (1, 2, 2), (1, 0, 0), divisor_override=3)),
    ]
    for pool, ref in cases:
        torch.testing.assert_close(pool(x), ref)


# --------------------------------------------------------------------------------------------
# aggregation


def test_aggregate_against_numpy_references():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 7, 5)) * 3
    t = torch.from_numpy(z)
    logp = scipy.special.log_softmax(z, axis=-1)
    np.testing.assert_allclose(aggregate(t).numpy(), logp.mean(1), atol=1e-12)
    np.testing.assert_allclose(aggregate(t, "mean-prob").numpy(), np.log(np.exp(logp).mean(1)), atol=1e-12)
    # mean-log-prob's argmax is the label with the smallest patch-aggregate loss (Eq. 10, cross-entropy)
    pal = np.stack([[-(logp[b, :, y]).sum() for y in range(5)] for b in range(4)])
    assert (aggregate(t).argmax(1).numpy() == pal.argmin(1)).all()
    for how in ("mean-prob", "vote"):
        np.testing.assert_allclose(aggregate(t, how).exp().sum(1).numpy(), 1.0, atol=1e-12)


def test_aggregate_vote_majority_and_tie_break():
    # image 0: 3 patches vote class 2 (barely), 2 vote class 0 (confidently) -> 2 wins
    # image 1: 2 vs 2 (vs 1) votes for classes 0 and 1, class 1 has the larger mean probability -> 1 wins
    z = torch.tensor([
        [[0.0, 0.0, 0.1], [0.0, 0.0, 0.1], [0.0, 0.0, 0.1], [9.0, 0.0, 0.0], [9.0, 0.0, 0.0]],
        [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [-1.0, -1.0, 0.0]],
    ])
    votes = aggregate(z, "vote")
    assert votes.argmax(1).tolist() == [2, 1]
    assert aggregate(z, "mean-prob").argmax(1)[0] == 0  # the probability average would pick the confident class
    p = z.softmax(-1).mean(1)
    counts = torch.tensor([[2.0, 0.0, 3.0], [2.0, 2.0, 1.0]])
    torch.testing.assert_close(votes, torch.log((counts + p) / 6))


def test_bad_parameters_raise():
    net = TinyNet()
    for kw, says in (({"depth_kernel": 0}, "depth_kernel must be an integer >= 1, got 0"),
                     ({"depth_kernel": 1.5}, "depth_kernel must be an integer >= 1, got 1.5"),
                     ({"depth_kernel": True}, "depth_kernel must be an integer >= 1, got True"),
                     ({"depth_pool": 2}, "depth_pool must be an odd integer >= 1 (N is kept, Eq. 9), got 2"),
                     ({"depth_pool": 0}, "depth_pool must be an odd integer >= 1 (N is kept, Eq. 9), got 0"),
                     ({"min_spatial": 0}, "min_spatial must be an integer >= 1, got 0"),
                     ({"inflate": "zeros"}, "inflate must be one of ('center', 'repeat', 'none'), got 'zeros'")):
        with pytest.raises(PatchbenchError, match=re.escape(says)):
            to_volumetric(net, 8, 2, **kw)
    for ps, cin, says in (((0, 8), 2, "patch_size must be a positive integer or a pair of them, got (0, 8)"),
                          ((8,), 2, "patch_size must be a positive integer or a pair of them, got (8,)"),
                          (8, 0, "in_channels must be a positive integer, got 0")):
        with pytest.raises(PatchbenchError, match=re.escape(says)):
            to_volumetric(net, ps, cin)
    g = to_volumetric(net, 8, 2)
    with pytest.raises(PatchbenchError, match=re.escape("takes (B, 2, N, 8, 8) volumes, got (1, 3, 4, 8, 8)")):
        g(torch.rand(1, 3, 4, 8, 8))  # wrong channels
    with pytest.raises(PatchbenchError, match=re.escape("takes (B, 2, N, 8, 8) volumes, got (1, 2, 8, 8)")):
        g(torch.rand(1, 2, 8, 8))  # not a volume
    with pytest.raises(PatchbenchError, match="no 3-D counterpart known for GroupNorm"):
        to_volumetric(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(144, 2)), 8, 1)
    with pytest.raises(PatchbenchError, match=re.escape("must end in a per-patch head (B, N, k); got (1, 4, 2, 6, 6)")):
        to_volumetric(nn.Sequential(nn.Conv2d(1, 4, 3)), 8, 1)
    with pytest.raises(PatchbenchError, match="unknown aggregation 'max'"):
        aggregate(torch.rand(2, 3, 4), how="max")
    with pytest.raises(PatchbenchError, match=re.escape("per_patch_logits must be a (B, N, k) tensor, got torch.Size([2, 3])")):
        aggregate(torch.rand(2, 3))
    with pytest.raises(PatchbenchError, match="unknown model 'no_such_net'"):
        parameter_increase("no_such_net", 3)
