"""Grad-CAM (TOMM 2022 Eq. 1–2), attention area (Eq. 3), masked image (Eq. 7), cam layers."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.errors import PatchbenchError
from patchbench.models.gradcam import GradCAM, attention_area, gradcam_for, masked_image
from patchbench.models import MODELS, Classifier, build_classifier
from patchbench.training.objectives import preservation_loss


pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """features (conv-relu-pool-conv-relu = the CAM layer) -> head (a nonlinear MLP)."""

    def __init__(self, classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, classes))

    def forward(self, x):
        return self.head(self.features(x))


class LinearHead(nn.Module):
    """conv-relu (the CAM layer) -> global average pool -> linear: Grad-CAM has a closed form."""

    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def reference_gradcam(model, x, c):
    """Slow reference without hooks: A and ∂y^c/∂A from explicit autograd on the layer output."""
    maps = []
    for i in range(len(x)):
        A = model.features(x[i:i + 1]).detach().requires_grad_(True)
        y_c = model.head(A)[0, c[i]]
        (dA,) = torch.autograd.grad(y_c, A)
        alpha = dA.mean((2, 3))[0]  # K
        maps.append(torch.relu((alpha[:, None, None] * A[0]).sum(0)))
    return torch.stack(maps).detach()


def test_gradcam_equals_slow_reference():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.rand(6, 2, 8, 8)
    c = torch.tensor([0, 1, 2, 3, 4, 0])
    cam = GradCAM(model, "features.4", normalize=False, upsample=False)
    g = cam(x, c)
    ref = reference_gradcam(model, x, c)
    assert g.shape == (6, 4, 4)
    assert ref.abs().max() > 0
    assert torch.allclose(g, ref, atol=1e-5)
    # normalized: the same map divided by its own maximum
    g_norm = GradCAM(model, model.features[4], normalize=True, upsample=False)(x, c)
    assert torch.allclose(g_norm, ref / (ref.flatten(1).amax(1).view(-1, 1, 1) + 1e-8), atol=1e-5)


def test_gradcam_on_a_frozen_model_as_evaluation_loads_it():
    """Evaluation freezes the weights (requires_grad False): Grad-CAM (and the A3 attack built
    on it) must still see the activations' graph."""
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.rand(3, 2, 8, 8)
    c = torch.tensor([0, 1, 2])
    ref = GradCAM(model, "features.4", normalize=False, upsample=False)(x, c)
    model.requires_grad_(False)
    g = GradCAM(model, "features.4", normalize=False, upsample=False)(x, c)
    assert torch.allclose(g, ref, atol=1e-6) and not x.requires_grad


def test_gradcam_linear_head_closed_form():
    """Global-average-pool + linear: α_k^c = W[c, k] / (h·w), so g = ReLU(Σ_k W[c,k] A^k) / (h·w)."""
    torch.manual_seed(1)
    model = LinearHead().eval()
    x = torch.rand(4, 1, 6, 6)
    c = torch.tensor([2, 0, 1, 2])
    g = GradCAM(model, "conv.1", normalize=False, upsample=False)(x, c)
    A = model.conv(x)
    W = model.fc.weight[c]  # N×K
    expected = torch.relu((W[:, :, None, None] * A).sum(1)) / 36
    assert torch.allclose(g, expected.detach(), atol=1e-6)


def test_default_class_is_the_prediction():
    torch.manual_seed(2)
    model = Tiny().eval()
    x = torch.rand(5, 2, 8, 8)
    cam = GradCAM(model, "features.4")
    assert torch.allclose(cam(x), cam(x, model(x).argmax(1)))


def test_upsampling_shape_and_range():
    torch.manual_seed(3)
    model = Tiny().eval()
    x = torch.rand(3, 2, 8, 8)
    g_grid = GradCAM(model, "features.4", upsample=False)(x)
    g, logits = GradCAM(model, "features.4").compute(x)
    assert g_grid.shape == (3, 4, 4) and g.shape == (3, 8, 8) and logits.shape == (3, 5)
    assert g.min() >= 0 and g.max() <= 1 + 1e-6
    expected = F.interpolate(GradCAM(model, "features.4", upsample=False, normalize=False)(x)[:, None], size=(8, 8),
                             mode="bilinear", align_corners=False)[:, 0]
    expected = expected / (expected.flatten(1).amax(1).view(-1, 1, 1) + 1e-8)
    assert torch.allclose(g, expected, atol=1e-6)


def test_preservation_loss_backpropagates_into_the_weights():
    """L_p = ‖g(x) − g(x')‖₁ reaches the conv weights below the CAM layer and, through α
    (create_graph=True), the head above it; without create_graph the head gets nothing."""
    torch.manual_seed(4)
    model = Tiny().train()
    x = torch.rand(4, 2, 8, 8)
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 3])
    cam = GradCAM(model, "features.4")
    preservation_loss(cam(x, y), cam(x_adv, y)).backward()
    assert model.features[0].weight.grad.abs().sum() > 0  # below the CAM layer
    assert model.features[3].weight.grad.abs().sum() > 0
    assert model.head[1].weight.grad.abs().sum() > 0  # above it, through α
    model.zero_grad(set_to_none=True)
    preservation_loss(cam(x, y, create_graph=False), cam(x_adv, y, create_graph=False)).backward()
    assert model.features[0].weight.grad.abs().sum() > 0
    assert model.head[1].weight.grad is None


def test_gradcam_touches_no_parameter_grad_and_removes_its_hook():
    model = Tiny().eval()
    cam = GradCAM(model, "features.4")
    with torch.no_grad():  # works inside no_grad (the engine's context) too
        g = cam(torch.rand(2, 2, 8, 8))
    assert g.shape == (2, 8, 8)
    assert all(p.grad is None for p in model.parameters())
    assert not model.features[4]._forward_hooks


def test_bad_layer():
    with pytest.raises(PatchbenchError, match="no layer"):
        GradCAM(Tiny(), "features.9")
    with pytest.raises(PatchbenchError, match="convolutional"):
        GradCAM(Tiny(), "head.1")(torch.rand(1, 2, 8, 8))


def test_attention_area_semantics():
    g = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 5.0]]], requires_grad=True)
    # κ = each image's own mean (1.5 and 2.0)
    assert torch.equal(attention_area(g), torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]]))
    # a fixed κ; ≥ includes the threshold itself
    assert torch.equal(attention_area(g, 1.0), torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]))
    assert not attention_area(g).requires_grad  # a hard threshold has no gradient
    assert attention_area(g[:, None]).shape == (2, 1, 2, 2)
    # zero attention is never in the area: an all-zero map has an empty area (not the whole image)
    assert attention_area(torch.zeros(1, 3, 3)).eq(0).all()
    assert torch.equal(attention_area(torch.tensor([[[0.0, 0.0], [0.0, 2.0]]]), 0.0), torch.tensor([[[0.0, 0.0], [0.0, 1.0]]]))
    with pytest.raises(PatchbenchError, match="kappa"):
        attention_area(g, "median")


def test_masked_image_semantics():
    x = torch.rand(2, 3, 4, 4)
    att = torch.zeros(2, 4, 4)
    att[0, :2, :2] = 1
    xm = masked_image(x, att)
    assert torch.equal(xm[0, :, :2, :2], torch.zeros(3, 2, 2))  # attention area blacked out, all channels
    assert torch.equal(xm[0, :, 2:, :], x[0, :, 2:, :]) and torch.equal(xm[1], x[1])
    coarse = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # 2×2 mask on a 4×4 image: nearest upsampling
    assert torch.equal(masked_image(x[:1], coarse), masked_image(x[:1], att[:1]))


@pytest.mark.parametrize("arch,dataset,size,grid", [
    ("lenet", "fashion-mnist", 28, 14), ("small_vgg", "fashion-mnist", 64, 16), ("resnet9", "cifar10", 32, 4),
])
def test_gradcam_for_registered_small_models(arch, dataset, size, grid):
    torch.manual_seed(0)
    model = build_classifier(arch, dataset)
    channels = 3 if dataset == "cifar10" else 1
    x = torch.rand(2, channels, size, size)
    cam = gradcam_for(model)
    assert cam.layer is model.net.get_submodule(MODELS[arch].cam_layer)
    assert cam(x, upsample=False).shape == (2, grid, grid)
    assert cam(x).shape == (2, size, size)


def test_torchvision_cam_layers_exist():
    """vgg16 / resnet50 / inception_v3 / efficientnet_b0: the registered names resolve (meta device: no memory)."""
    import torchvision

    for arch in ("vgg16", "resnet50", "inception_v3", "efficientnet_b0", "alexnet", "resnet18"):
        layer = MODELS[arch].cam_layer
        with torch.device("meta"):
            net = torchvision.models.get_model(arch, weights=None, num_classes=10, **({"init_weights": False} if arch == "inception_v3" else {}))
        net.get_submodule(layer)


def test_resnet9_shape():
    net, _ = MODELS["resnet9"].build(num_classes=10, in_channels=3)
    assert sum(p.numel() for p in net.parameters()) == 6_573_120
    assert [n for n, _ in net.named_children()] == ["prep", "layer1", "layer2", "layer3", "pool", "fc"]
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_gradcam_for_unregistered_model():
    model = Classifier(Tiny(), (0.5, 0.5), (0.5, 0.5), "not-registered", list("abcde"))
    with pytest.raises(PatchbenchError, match="no Grad-CAM layer"):
        gradcam_for(model)


def test_lenet_inplace_relu_layer_matches_reference():
    """LeNet's CAM layer is an in-place ReLU: the hooked output is still the right A."""
    torch.manual_seed(5)
    model = build_classifier("lenet", "fashion-mnist").eval()
    x, c = torch.rand(3, 1, 28, 28), torch.tensor([1, 4, 7])
    g = gradcam_for(model, normalize=False)(x, c, upsample=False)
    below, above = model.net[:5], model.net[5:]
    ref = []
    for i in range(3):
        A = below(model.normalize(x[i:i + 1])).detach().requires_grad_(True)
        (dA,) = torch.autograd.grad(above(A)[0, c[i]], A)
        ref.append(torch.relu((dA.mean((2, 3))[0][:, None, None] * A[0]).sum(0)))
    assert torch.allclose(g, torch.stack(ref).detach(), atol=1e-5)
