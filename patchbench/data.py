"""Dataset registry: name -> loader of a split as images in [0, 1] at the preset's size.

Small datasets (Fashion-MNIST, MNIST, CIFAR) live in memory as uint8 tensors and are resized per
batch on the device (cheap, no per-sample Python). ImageNet is an ``ImageFolder`` read by a
DataLoader with workers (decoding dominates). Either way a batch reaches the caller as
``(indices, images, labels)`` with images float32 N×C×S×S in [0, 1] on the requested device.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from patchbench.errors import PatchbenchError
from patchbench.util import atomic_write

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cache_dir() -> Path:
    """``$PATCHBENCH_CACHE`` or ``~/.cache/patchbench``."""
    return Path(os.environ.get("PATCHBENCH_CACHE", Path.home() / ".cache" / "patchbench"))


@dataclass
class DatasetInfo:
    name: str
    channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    native_size: int | None
    loader: Callable[[str | None, str], "ImageSource"]
    classes: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = ("train", "test")


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    DATASETS[info.name] = info
    return info


def get_dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise PatchbenchError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


# --------------------------------------------------------------------------------------------
# sources


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
        from torchvision import datasets, transforms

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
    from PIL import Image

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


def load_split(dataset: str, root: str | None, split: str, image_size: int | None = None) -> ImageSource:
    info = get_dataset_info(dataset)
    if split not in info.splits:
        raise PatchbenchError(f"dataset {dataset} has no split {split!r}; splits: {', '.join(info.splits)}")
    if root is not None and not Path(root).exists():
        raise PatchbenchError(f"dataset root {root} does not exist")
    if dataset == "imagenet":
        return _load_imagenet(root, split, image_size or 224)
    return info.loader(root, split)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST / MNIST from IDX files


def _find_idx_dir(candidates: list[Path], split: str) -> Path | None:
    names = IDX_FILES[split]
    for base in candidates:
        for d in (base, base / "raw", base / "FashionMNIST" / "raw", base / "MNIST" / "raw"):
            if all((d / n).exists() or (d / f"{n}.gz").exists() for n in names):
                return d
    return None


def _read_idx(directory: Path, name: str, unpack_to: Path) -> torch.Tensor:
    """Read an IDX file with torchvision's reader, gunzipping Debian's ``.gz`` into the cache."""
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    plain = directory / name
    if not plain.exists():
        unpack_to.mkdir(parents=True, exist_ok=True)
        plain = unpack_to / name
        if not plain.exists():
            with gzip.open(directory / f"{name}.gz", "rb") as src:
                atomic_write(plain, src.read())
    try:
        return read_sn3_pascalvincent_tensor(str(plain), strict=False)
    except Exception as exc:  # corrupt or truncated file
        raise PatchbenchError(f"cannot read IDX file {plain}: {exc}") from None


def _mnist_like(name: str, tv_class: str, debian_dir: str | None):
    def load(root: str | None, split: str) -> ImageSource:
        candidates: list[Path] = []
        if root is not None:
            candidates.append(Path(root))
        else:
            if os.environ.get("PATCHBENCH_DATA"):
                candidates.append(Path(os.environ["PATCHBENCH_DATA"]) / name)
                candidates.append(Path(os.environ["PATCHBENCH_DATA"]))
            if debian_dir:
                candidates.append(Path(debian_dir))
            candidates.append(cache_dir() / name)
        found = _find_idx_dir(candidates, split)
        if found is None and root is None:
            import torchvision

            try:  # last resort: torchvision's own download into the cache
                getattr(torchvision.datasets, tv_class)(str(cache_dir() / name), train=split == "train", download=True)
            except Exception as exc:
                hint = f" or `apt-get install dataset-{name}`" if debian_dir else ""
                raise PatchbenchError(
                    f"{name} not found (looked in {', '.join(map(str, candidates))}) and the download failed "
                    f"({type(exc).__name__}); pass --data-root DIR with the IDX files{hint}"
                ) from None
            found = _find_idx_dir([cache_dir() / name], split)
        if found is None:
            raise PatchbenchError(f"{name} IDX files for split {split!r} not found under {root}")
        img_name, lbl_name = IDX_FILES[split]
        unpack = cache_dir() / name / "unpacked"
        images = _read_idx(found, img_name, unpack)
        labels = _read_idx(found, lbl_name, unpack)
        if images.ndim != 3 or len(images) != len(labels):
            raise PatchbenchError(f"{name} files in {found} have inconsistent shapes")
        return TensorImages(images, labels)

    return load


CIFAR_LAYOUT = {  # torchvision's folder and the python-pickle batches of each split
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}, "labels"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels"),
}


def _read_cifar(folder: Path, name: str, split: str) -> ImageSource:
    """The python-pickle batches of the official archive (torchvision's layout), read directly."""
    import pickle

    import numpy as np

    _, files, label_key = CIFAR_LAYOUT[name]
    data, labels = [], []
    for f in files[split]:
        try:
            with open(folder / f, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        except (OSError, KeyError, ValueError, pickle.UnpicklingError) as exc:
            raise PatchbenchError(f"cannot read {name} batch {folder / f}: {type(exc).__name__}") from None
    return TensorImages(torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64))


def _cifar(tv_class: str, name: str):
    def load(root: str | None, split: str) -> ImageSource:
        base = Path(root) if root else cache_dir() / name
        folder_name = CIFAR_LAYOUT[name][0]
        folder = base if base.name == folder_name else base / folder_name
        if not folder.is_dir() and root is None:
            import torchvision

            try:  # torchvision's download (and checksum) into the cache
                getattr(torchvision.datasets, tv_class)(str(base), train=split == "train", download=True)
            except Exception as exc:
                raise PatchbenchError(f"{name} not available under {base} and the download failed "
                                      f"({type(exc).__name__}); pass --data-root DIR") from None
        if not folder.is_dir():
            raise PatchbenchError(f"{name} not found: expected the folder {folder_name}/ of the official "
                                  f"python archive under {base}; pass --data-root DIR")
        return _read_cifar(folder, name, split)

    return load


def _load_imagenet(root: str | None, split: str, size: int) -> ImageSource:
    root = root or os.environ.get("PATCHBENCH_IMAGENET")
    if not root:
        raise PatchbenchError(
            "imagenet needs --data-root DIR (or $PATCHBENCH_IMAGENET) holding the ImageFolder "
            "layout: DIR/val/<wnid>/*.JPEG and DIR/train/<wnid>/*.JPEG"
        )
    base = Path(root)
    folder = base / split if (base / split).is_dir() else None
    if folder is None:
        raise PatchbenchError(f"imagenet split folder {base / split} does not exist")
    return FolderImages(folder, size)


register_dataset(DatasetInfo(
    "fashion-mnist", 1, 10, (0.2860,), (0.3530,), 28,
    _mnist_like("fashion-mnist", "FashionMNIST", DEBIAN_FASHION_DIR), FASHION_CLASSES))
register_dataset(DatasetInfo(
    "mnist", 1, 10, (0.1307,), (0.3081,), 28,
    _mnist_like("mnist", "MNIST", None), [str(i) for i in range(10)]))
register_dataset(DatasetInfo(
    "cifar10", 3, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32,
    _cifar("CIFAR10", "cifar10"),
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]))
register_dataset(DatasetInfo(
    "cifar100", 3, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 32,
    _cifar("CIFAR100", "cifar100"), []))
register_dataset(DatasetInfo(
    "imagenet", 3, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None,
    lambda root, split: _load_imagenet(root, split, 224), [], splits=("train", "val")))
