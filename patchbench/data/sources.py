"""A loaded split and batched iteration over it: images float32 N×C×S×S in [0, 1] on the device.

Small datasets (Fashion-MNIST, MNIST, CIFAR) live in memory as uint8 tensors and are resized per
batch on the device (cheap, no per-sample Python). ImageNet is an ``ImageFolder`` read by a
DataLoader with workers (decoding dominates). Either way a batch reaches the caller as
``(indices, images, labels)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from PIL import Image

from patchbench.errors import PatchbenchError


class ImageSource:
    """A split: ``len``, ``labels`` (LongTensor) and batched access through :func:`iterate`."""

    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


class TensorImages(ImageSource):
    """uint8 images N×C×H×W held in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(1)
        self.images = images.contiguous()
        self.labels = labels.long()

    def batch(self, idx: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
        x = self.images[idx].to(device, non_blocking=True).float().div_(255.0)
        if x.shape[-1] != size or x.shape[-2] != size:
            # bilinear up/down-sampling of the whole batch at once (the demo's 28 -> 64)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > size).clamp_(0, 1)
        return x


class FolderImages(ImageSource):
    """``torchvision.datasets.ImageFolder`` layout (one folder per class), resized to ``size``.

    The DataLoader workers decode and resize (PIL) and hand over uint8 tensors: a quarter of the
    bytes through pinned memory to the device, where :func:`iterate` turns them into floats in
    [0, 1] (the same numbers as ``ToTensor``: a uint8 divided by 255 in float32).
    """

    def __init__(self, root: Path, size: int):
        from torchvision import datasets, transforms  # reason: torchvision takes seconds to import; only ImageFolder sets need it

        tf = transforms.Compose([
            transforms.Resize((size, size), antialias=True),
            transforms.PILToTensor(),
        ])
        try:
            self.dataset = datasets.ImageFolder(str(root), transform=tf, loader=_rgb_loader)
        except (FileNotFoundError, RuntimeError) as exc:
            raise PatchbenchError(f"no ImageFolder dataset at {root}: {str(exc).splitlines()[0]}") from None
        self.labels = torch.tensor(self.dataset.targets, dtype=torch.long)
        self.classes = self.dataset.classes


def _rgb_loader(path: str):

    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def iterate(
    source: ImageSource,
    indices: torch.Tensor,
    image_size: int,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(indices, images, labels)`` batches in the order of ``indices``."""
    if isinstance(source, TensorImages):
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            yield idx, source.batch(idx, image_size, device), source.labels[idx].to(device)
        return
    assert isinstance(source, FolderImages)
    subset = torch.utils.data.Subset(source.dataset, indices.tolist())
    loader = torch.utils.data.DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    start = 0
    for x, y in loader:
        idx = indices[start:start + len(y)]
        start += len(y)
        # uint8 over the bus, float on the device (== ToTensor's x / 255)
        yield idx, x.to(device, non_blocking=True).float().div_(255.0), y.to(device, non_blocking=True)


def eval_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """The fixed evaluation subset: ``n`` indices drawn without replacement with ``seed``,
    sorted (0 or n >= n_total: the whole split)."""
    if n <= 0 or n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values

