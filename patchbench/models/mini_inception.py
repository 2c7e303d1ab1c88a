"""A small Inception-style net: the demo's stand-in for Inception-v3 (ICAART Tables 2 and 4).

The ICAART tables compare a plain stacked-conv net (VGG16) with a multi-branch one
(Inception-v3); at demo scale ``small_vgg`` stands in for the first and this net, built from
Inception-v3's block pattern (parallel 1×1, 3×3, double-3×3 and pool-projection branches,
concatenated), for the second.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from patchbench.models.registry import register_model


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """Four branches as in Inception-v3's block A: 1×1 | 1×1→3×3 | 1×1→3×3→3×3 | pool→1×1."""

    def __init__(self, cin: int, b1: int, b3: int, b33: int, bp: int):
        super().__init__()
        self.branch1 = _conv(cin, b1, 1)
        self.branch3 = nn.Sequential(_conv(cin, b3 // 2, 1), _conv(b3 // 2, b3))
        self.branch33 = nn.Sequential(_conv(cin, b33 // 2, 1), _conv(b33 // 2, b33), _conv(b33, b33))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, bp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch33(x), self.branch_pool(x)], 1)


@register_model("mini_inception", description="Inception-style 2-block net with global pooling (~60k params; demo)")
def mini_inception(num_classes: int, in_channels: int, weights=None):
    net = nn.Sequential(
        _conv(in_channels, 24, stride=2),
        _conv(24, 32),
        nn.MaxPool2d(2),
        InceptionBlock(32, 16, 24, 16, 8),  # -> 64 channels
        nn.MaxPool2d(2),
        InceptionBlock(64, 24, 32, 16, 16),  # -> 88 channels
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(88, num_classes),
    )
    return net, None
