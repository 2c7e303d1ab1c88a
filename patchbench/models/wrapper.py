"""The classifier contract: an nn.Module in eval mode mapping [0, 1] images to logits.

Normalization (dataset mean/std) lives here, so attacks and defenses work in pixel space.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Classifier(nn.Module):
    def __init__(self, net: nn.Module, mean, std, name: str, class_names: list[str], image_size: int | None = None):
        super().__init__()
        self.net = net
        self.name = name
        self.class_names = list(class_names)
        self.image_size = image_size
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))
        self.eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.normalize(x))
        # torchvision's Inception returns a namedtuple with aux logits in train mode
        return out.logits if hasattr(out, "logits") else out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).argmax(1)


class Normalizer(nn.Module):
    """Only a dataset's normalization (``mean``/``std`` buffers), no network: what a defense in
    normalized space needs to defend image files without the classifier's weights."""

    def __init__(self, mean, std):
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    @classmethod
    def for_dataset(cls, dataset: str) -> "Normalizer":
        from patchbench.data import get_dataset_info

        info = get_dataset_info(dataset)
        return cls(info.mean, info.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from patchbench.errors import PatchbenchError

        raise PatchbenchError("this defense needs the classifier itself (saliency); normalization alone is not enough")
