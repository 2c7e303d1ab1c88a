"""Dataset registry: name -> how to load a split (its readers: :mod:`patchbench.data.readers`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from patchbench.data.sources import ImageSource
from patchbench.errors import PatchbenchError
from patchbench.registry import Registry


@dataclass
class DatasetInfo:
    name: str
    channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    native_size: int | None
    # loader(root, split, image_size): the split; image_size (None: the dataset's own) matters only
    # to a dataset decoded at the preset's size (ImageNet), the others resize per batch
    loader: Callable[[str | None, str, int | None], ImageSource]
    classes: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = ("train", "test")
    # probe(root, split) -> None when the split is on disk, else (what is missing, how to fix it);
    # never downloads (the preflight of `reproduce`). None: the dataset cannot say without loading.
    probe: Callable[[str | None, str], tuple[str, str] | None] | None = None
    # verify(root, split): one-line PatchbenchError when the split's files on disk differ from the official
    # ones (their published checksums), before the loader reads them; None: the format has no checksums.
    # Skipped with data.verify: false (a user's own re-encoded copy; its readers still run no code)
    verify: Callable[[str | None, str], None] | None = None


class NotOfficial(PatchbenchError):
    """A dataset file on disk differs from the official one (its published checksum): ``what`` is wrong,
    ``fix`` says what to do (the preflight lists the two apart)."""

    def __init__(self, what: str, fix: str):
        super().__init__(f"{what}: {fix}")
        self.what, self.fix = what, fix


DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register


def get_dataset_info(name: str) -> DatasetInfo:
    return DATASETS.lookup(name)


def load_split(dataset: str, root: str | None, split: str, image_size: int | None = None,
               verify: bool = True) -> ImageSource:
    """The split, its files checked against the official checksums first where the dataset has them
    (``verify=False``: the preset's ``data.verify: false``, for a copy of one's own)."""
    info = get_dataset_info(dataset)
    if split not in info.splits:
        raise PatchbenchError(f"dataset {dataset} has no split {split!r}; splits: {', '.join(info.splits)}")
    if root is not None and not Path(root).exists():
        raise PatchbenchError(f"dataset root {root} does not exist")
    if verify and info.verify is not None:
        info.verify(root, split)
    return info.loader(root, split, image_size)

