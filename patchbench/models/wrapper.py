"""The classifier contract: an nn.Module in eval mode mapping [0, 1] images to logits.

Normalization (dataset mean/std) lives here, so attacks and defenses work in pixel space.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from patchbench.data import get_dataset_info
from patchbench.errors import PatchbenchError
from patchbench.models.volumetric import aggregate


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

        info = get_dataset_info(dataset)
        return cls(info.mean, info.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:

        raise PatchbenchError("this defense needs the classifier itself (saliency); normalization alone is not enough")


class VolumetricClassifier(Classifier):
    """g of BMVC 2023 Sec. 4 behind the classifier contract: [0, 1] images in, logits out.

    x -> V(x) (the volumizer ranks the raw [0, 1] patches, Eq. 3-4) -> per-channel normalization of the
    volume -> the 3-D network (Eq. 5-9) -> per-patch logits (B, N, k) -> aggregated per image (B, k).
    ``per_patch_logits`` is what the patch-aggregate loss trains on (Eq. 10). Attacks see a function of
    the pixels like any classifier: the ranking is piecewise constant and treated as a constant, the
    gradient reaches the pixels through the patch gather (see :class:`patchbench.volumization.Volumizer`).
    """

    def __init__(self, net: nn.Module, volumizer: nn.Module, aggregation: str, mean, std, name: str,
                 class_names: list[str], image_size: int | None = None):
        super().__init__(net, mean, std, name, class_names, image_size)
        self.volumizer = volumizer
        self.aggregation = aggregation

    def per_patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        volume = self.volumizer(x)  # (B, C, N, ph, pw)
        return self.net((volume - self.mean.unsqueeze(2)) / self.std.unsqueeze(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:

        return aggregate(self.per_patch_logits(x), self.aggregation)
