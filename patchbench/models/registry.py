"""name -> constructor map. A constructor takes (num_classes, in_channels, weights) -> (nn.Module,
class names or None); a name is registered once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from patchbench.registry import Registry


@dataclass
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    pretrained: bool  # True: ImageNet weights through torchvision; False: trained by patchbench
    description: str
    # Grad-CAM layer (patchbench.models.gradcam): a dotted module name inside the built network (not the
    # Classifier wrapper), the last convolutional activation as in Selvaraju et al.; None = none
    cam_layer: str | None = None


MODELS: Registry = Registry("model")


def register_model(name: str, *, pretrained: bool = False, description: str = "", cam_layer: str | None = None):
    """Decorator registering a constructor under ``name``; a name already taken is refused."""
    def deco(fn):
        doc = (fn.__doc__ or "").strip()
        MODELS.register(ModelSpec(name, fn, pretrained, description or doc.partition("\n")[0], cam_layer))
        return fn

    return deco
