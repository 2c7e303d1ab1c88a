"""Small networks trained by patchbench itself (the embedded Fashion-MNIST default)."""

from __future__ import annotations

import torch.nn as nn

from patchbench.models.registry import register_model


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_model("small_vgg", description="VGG-style 4-conv net with global pooling (~67k params; demo)")
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


@register_model("lenet", description="LeNet-5-style net (MNIST-scale baseline)")
def lenet(num_classes: int, in_channels: int, weights=None):
    """LeNet-style net: two conv+pool stages and two FC layers (works at any input size)."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(7), nn.Flatten(),
        nn.Linear(64 * 49, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(1024, num_classes),
    )
    return net, None
