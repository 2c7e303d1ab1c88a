"""Small networks trained by patchbench itself (the embedded Fashion-MNIST default)."""

from __future__ import annotations

import torch
import torch.nn as nn

from patchbench.models.registry import register_model


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_model("small_vgg", description="VGG-style 4-conv net with global pooling (~67k params; demo)", cam_layer="4")
def small_vgg(num_classes: int, in_channels: int, weights=None):
    """VGG-style net with global pooling, ~67k parameters (the demo's classifier).

    Global pooling matters: LeNet-style nets with large FC layers barely react to small corner
    patches, so a patch benchmark on them is trivial.
    """
    net = nn.Sequential(
        _conv(in_channels, 16, stride=2),
        _conv(16, 32),
        nn.MaxPool2d(2),
        _conv(32, 32),
        _conv(32, 64),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, num_classes),
    )
    return net, None


@register_model("lenet", description="LeNet-5-style net (MNIST-scale baseline)", cam_layer="4")
def lenet(num_classes: int, in_channels: int, weights=None):
    """LeNet-style net: two conv+pool stages and two FC layers (works at any input size).

    This is the MNIST network of Madry et al. / the TOMM 2022 paper's LeNet (TensorFlow's "deep
    MNIST" model): conv 5×5×32 + max-pool, conv 5×5×64 + max-pool, FC 1024 with dropout at keep
    rate 0.5, FC to the classes. At 28 px the adaptive pool is the identity (7×7 already).
    Grad-CAM layer "4": the second conv's ReLU output (14×14 at 28 px).
    """
    net = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(7), nn.Flatten(),
        nn.Linear(64 * 49, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(1024, num_classes),
    )
    return net, None


class _Residual(nn.Module):
    """x + conv_bn(conv_bn(x)), the identity shortcut of ResNet9's layer1 and layer3."""

    def __init__(self, channels: int):
        super().__init__()
        self.res1 = _conv(channels, channels)
        self.res2 = _conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res2(self.res1(x))


class ResNet9(nn.Module):
    """The DAWNBench CIFAR-10 ResNet9 (Myrtle.ai): prep 64; layer1 128 + pool + residual;
    layer2 256 + pool; layer3 512 + pool + residual; global max-pool; bias-free FC; logits × 0.125.

    Every conv is 3×3 conv–BatchNorm–ReLU. The global pool is adaptive, so any input size works
    (32 px: 4×4 before the pool).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, logit_scale: float = 0.125):
        super().__init__()
        self.prep = _conv(in_channels, 64)
        self.layer1 = nn.Sequential(_conv(64, 128), nn.MaxPool2d(2), _Residual(128))
        self.layer2 = nn.Sequential(_conv(128, 256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(_conv(256, 512), nn.MaxPool2d(2), _Residual(512))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(512, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(torch.flatten(self.pool(x), 1)) * self.logit_scale


@register_model("resnet9", description="DAWNBench/Myrtle CIFAR-10 ResNet9 (~6.6M params; TOMM 2022)", cam_layer="layer3")
def resnet9(num_classes: int, in_channels: int, weights=None):
    """ResNet9 of the TOMM 2022 CIFAR-10 experiments (Grad-CAM at layer3, 4×4 at 32 px)."""
    return ResNet9(num_classes, in_channels), None
