"""The built-in datasets' readers and their registration: Fashion-MNIST / MNIST from IDX files,
CIFAR-10/100 from the official python batches, ImageNet as an ``ImageFolder``.

Each looks in the given root, then in its usual places, and downloads through torchvision into
:func:`cache_dir` as a last resort (never ImageNet).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from patchbench.data.registry import DatasetInfo, NotOfficial, register_dataset
from patchbench.data.safe_pickle import safe_load
from patchbench.data.sources import FolderImages, ImageSource, TensorImages
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


def _find_idx_dir(candidates: list[Path], split: str) -> Path | None:
    names = IDX_FILES[split]
    for base in candidates:
        for d in (base, base / "raw", base / "FashionMNIST" / "raw", base / "MNIST" / "raw"):
            if all((d / n).exists() or (d / f"{n}.gz").exists() for n in names):
                return d
    return None


# IDX value types (the magic number's third byte) -> big-endian numpy dtypes: torchvision's
# SN3_PASCALVINCENT_TYPEMAP (torchvision/datasets/mnist.py), {8: uint8, 9: int8, 11: int16, 12: int32,
# 13: float32, 14: float64}
IDX_DTYPES = {8: ">u1", 9: ">i1", 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}


def read_idx_file(path: Path) -> torch.Tensor:
    """An IDX file (LeCun's MNIST format) as a tensor, as torchvision's
    ``datasets.mnist.read_sn3_pascalvincent_tensor(path, strict=False)`` reads it: a big-endian magic
    number ``type · 256 + ndim`` (1 <= ndim <= 3), ndim big-endian sizes, then the values, big-endian;
    the values viewed at those sizes (a truncated file raises). Here rather than torchvision's because
    importing torchvision takes seconds (it loads torch._dynamo), more than reading the files."""
    data = Path(path).read_bytes()
    magic = int.from_bytes(data[:4], "big")
    ndim, kind = magic % 256, magic // 256
    if not (1 <= ndim <= 3 and kind in IDX_DTYPES):
        raise ValueError(f"not an IDX file (magic number {magic:#010x})")
    shape = [int.from_bytes(data[4 * (i + 1):4 * (i + 2)], "big") for i in range(ndim)]
    values = np.frombuffer(data, dtype=IDX_DTYPES[kind], offset=4 * (ndim + 1))
    return torch.from_numpy(values.astype(values.dtype.newbyteorder("="))).view(*shape)


def _read_idx(directory: Path, name: str, unpack_to: Path) -> torch.Tensor:
    """Read an IDX file (:func:`read_idx_file`), gunzipping Debian's ``.gz`` into the cache."""
    plain = directory / name
    if not plain.exists():
        unpack_to.mkdir(parents=True, exist_ok=True)
        plain = unpack_to / name
        if not plain.exists():
            with gzip.open(directory / f"{name}.gz", "rb") as src:
                atomic_write(plain, src.read())
    try:
        return read_idx_file(plain)
    except Exception as exc:  # corrupt or truncated file
        raise PatchbenchError(f"cannot read IDX file {plain}: {exc}") from None


def _data_env(name: str) -> list[Path]:
    """``$PATCHBENCH_DATA/<name>`` and ``$PATCHBENCH_DATA`` itself, when the variable is set."""
    base = os.environ.get("PATCHBENCH_DATA")
    return [Path(base) / name, Path(base)] if base else []


def _idx_candidates(name: str, root: str | None, debian_dir: str | None) -> list[Path]:
    if root is not None:
        return [Path(root)]
    return _data_env(name) + ([Path(debian_dir)] if debian_dir else []) + [cache_dir() / name]


def _download_fix(name: str, tv_class: str) -> str:
    return (f"python -c \"import torchvision; torchvision.datasets.{tv_class}('{cache_dir() / name}', "
            f"train=True, download=True); torchvision.datasets.{tv_class}('{cache_dir() / name}', download=True)\"")


def _mnist_probe(name: str, tv_class: str, debian_dir: str | None):
    def probe(root: str | None, split: str) -> tuple[str, str] | None:
        candidates = _idx_candidates(name, root, debian_dir)
        if _find_idx_dir(candidates, split) is not None:
            return None
        looked = ", ".join(map(str, candidates))
        if root is not None:
            return f"{name} {split} IDX files not in {root}", "point --data-root / data.root at the folder holding them"
        fixes = [f"PATCHBENCH_DATA=DIR (DIR/{name}/ holding the IDX files)", _download_fix(name, tv_class)]
        if debian_dir:
            fixes.insert(0, f"apt-get install dataset-{name}")
        return f"{name} {split} split not found (looked in {looked})", " or ".join(fixes)

    return probe


def _mnist_like(name: str, tv_class: str, debian_dir: str | None):
    def load(root: str | None, split: str, image_size: int | None = None) -> ImageSource:
        candidates = _idx_candidates(name, root, debian_dir)
        found = _find_idx_dir(candidates, split)
        if found is None and root is None:
            import torchvision  # reason: torchvision takes seconds to import; only this reader needs it

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
    """The python-pickle batches of the official archive (torchvision's layout), read directly, through the
    restricted unpickler: a batch holds a dict of a uint8 array and a list of labels, and nothing in a
    file can run code (a refused global is one line naming the file)."""

    _, files, label_key = CIFAR_LAYOUT[name]
    data, labels = [], []
    for f in files[split]:
        try:
            with open(folder / f, "rb") as fh:
                batch = safe_load(fh, folder / f)
            data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise PatchbenchError(f"cannot read {name} batch {folder / f}: {type(exc).__name__}") from None
    return TensorImages(torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64))


_MD5_OK: set[tuple[str, int, int, str]] = set()  # (file, size, mtime, md5) checked once per process


def _cifar_verify(tv_class: str, name: str):
    """The official MD5 of each batch of the split (torchvision's ``train_list`` / ``test_list``), checked
    with torchvision's ``check_integrity`` before anything is unpickled. A missing folder is left to the
    loader (torchvision's download checks its archive); a missing file to the reader's one-line error."""
    def verify(root: str | None, split: str) -> None:
        import torchvision.datasets  # reason: torchvision takes seconds to import; only this reader needs it
        from torchvision.datasets.utils import check_integrity  # reason: as above

        _, folder = _cifar_folder(name, root)
        tv = getattr(torchvision.datasets, tv_class)
        official = dict(tv.train_list + tv.test_list)
        for f in CIFAR_LAYOUT[name][1][split]:
            path = folder / f
            if not path.is_file():
                continue
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns, official[f])
            if key in _MD5_OK:
                continue
            if not check_integrity(path, official[f]):
                raise NotOfficial(
                    f"{path} is not the official {name} file (its MD5 differs from {official[f]}), so it was not read",
                    f"replace it with the official archive's ({_download_fix(name, tv_class)}), or, for a copy of your "
                    "own, set data.verify: false (--set data.verify=false; still read without running code)")
            _MD5_OK.add(key)

    return verify


def _cifar_folder(name: str, root: str | None) -> tuple[Path, Path]:
    """(base, folder of the python batches): the root, else ``$PATCHBENCH_DATA/<name>`` when it
    holds the batches, else the cache (where torchvision downloads)."""
    folder_name = CIFAR_LAYOUT[name][0]
    bases = [Path(root)] if root else [*(_data_env(name)[:1]), cache_dir() / name]
    pairs = [(base, base if base.name == folder_name else base / folder_name) for base in bases]
    return next((pair for pair in pairs if pair[1].is_dir()), pairs[-1])


def _cifar_probe(tv_class: str, name: str):
    def probe(root: str | None, split: str) -> tuple[str, str] | None:
        base, folder = _cifar_folder(name, root)
        if folder.is_dir():
            return None
        if root is not None:
            return f"{name}: no {folder.name}/ under {root}", "point --data-root / data.root at the extracted python archive"
        return (f"{name} not found ({folder} does not exist)",
                f"PATCHBENCH_DATA=DIR (DIR/{name}/{folder.name}/) or {_download_fix(name, tv_class)}")

    return probe


def _cifar(tv_class: str, name: str):
    def load(root: str | None, split: str, image_size: int | None = None) -> ImageSource:
        base, folder = _cifar_folder(name, root)
        folder_name = folder.name
        if not folder.is_dir() and root is None:
            import torchvision  # reason: torchvision takes seconds to import; only this reader needs it

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


def _imagenet_probe(root: str | None, split: str) -> tuple[str, str] | None:
    root = root or os.environ.get("PATCHBENCH_IMAGENET")
    layout = "DIR/val/<wnid>/*.JPEG and DIR/train/<wnid>/*.JPEG"
    if not root:
        return ("no --data-root and $PATCHBENCH_IMAGENET is not set",
                f"IMAGENET=DIR make reproduce-tables (or export PATCHBENCH_IMAGENET=DIR); {layout}")
    if not (Path(root) / split).is_dir():
        return f"ImageNet {split} folder {Path(root) / split} does not exist", f"the ImageFolder layout {layout}"
    return None


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
    _mnist_like("fashion-mnist", "FashionMNIST", DEBIAN_FASHION_DIR), FASHION_CLASSES,
    probe=_mnist_probe("fashion-mnist", "FashionMNIST", DEBIAN_FASHION_DIR)))
register_dataset(DatasetInfo(
    "mnist", 1, 10, (0.1307,), (0.3081,), 28,
    _mnist_like("mnist", "MNIST", None), [str(i) for i in range(10)], probe=_mnist_probe("mnist", "MNIST", None)))
register_dataset(DatasetInfo(
    "cifar10", 3, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 32,
    _cifar("CIFAR10", "cifar10"), probe=_cifar_probe("CIFAR10", "cifar10"), verify=_cifar_verify("CIFAR10", "cifar10"), classes=[
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]))
register_dataset(DatasetInfo(
    "cifar100", 3, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 32,
    _cifar("CIFAR100", "cifar100"), [], probe=_cifar_probe("CIFAR100", "cifar100"), verify=_cifar_verify("CIFAR100", "cifar100")))
register_dataset(DatasetInfo(
    "imagenet", 3, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None,
    lambda root, split, image_size=None: _load_imagenet(root, split, image_size or 224), [], splits=("train", "val"),
    probe=_imagenet_probe))
