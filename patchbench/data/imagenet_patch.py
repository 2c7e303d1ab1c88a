"""ImageNet-Patch (Pintor et al., Pattern Recognition 2023; ``pralab/ImageNet-Patch``): its published
file read without running any code from it.

The file (``assets/imagenet_patch.gz`` in the repository) is a gzip'd pickle of ``(patches, targets,
info)`` made with plain ``pickle``: ``patches`` a float tensor 10×3×224×224 (each patch drawn in the
centre box of a 224 px canvas, zeros elsewhere), ``targets`` a tensor (10,) of ImageNet class indices
(float32 in the published file), ``info`` a dict ``{"patch_size": 50, "target_names": {class: name}, "patch_type": "square",
"input_shape": (3, 224, 224)}`` (the repository's notebook, "Import Imagenet-Patch"). Its pickle
names three globals (read from its opcodes with ``pickletools``, nothing run): a tensor is rebuilt by
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``, its storage
by ``torch.storage._load_from_bytes(bytes)`` — which calls ``torch.load(..., weights_only=False)``,
i.e. any code — and the hooks are a ``collections.OrderedDict``.

:func:`read` unpickles with :func:`patchbench.data.safe_pickle.safe_load` and an allow list of exactly
those three names, each bound to a checked stand-in: the storage bytes go to
``torch.load(weights_only=True)`` (torch's own restricted unpickler, which admits storages and
nothing callable), the tensor is set on that storage with public API after its offset, size and
stride are checked against it, the hooks must be empty. Any other global (``os.system``, ``eval``,
an object's ``__reduce__``) is refused in one line before it is imported, and so is a storage blob
that ``weights_only`` refuses. The decompressed pickle is capped at :data:`MAX_BYTES`.
"""

from __future__ import annotations

import collections
import gzip
import io
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from patchbench.data.readers import cache_dir
from patchbench.data.safe_pickle import safe_load
from patchbench.errors import PatchbenchError

MAX_BYTES = 256 * 2 ** 20  # the published file unpickles from 6 MB
URL = "https://github.com/pralab/ImageNet-Patch/raw/main/assets/imagenet_patch.gz"


def _storage(blob) -> torch.UntypedStorage:
    if not isinstance(blob, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"storage from a {type(blob).__name__} refused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage's deprecation notice
        try:
            s = torch.load(io.BytesIO(bytes(blob)), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise pickle.UnpicklingError(f"a storage blob refused by torch.load(weights_only=True): "
                                         f"{str(exc).splitlines()[0][:160]}") from None
        except Exception as exc:
            raise pickle.UnpicklingError(f"a damaged storage blob ({type(exc).__name__})") from None
        if not isinstance(s, torch.TypedStorage):
            raise pickle.UnpicklingError(f"storage blob holding a {type(s).__name__} refused")
        return s


def _tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None) -> torch.Tensor:
    """``_rebuild_tensor_v2``'s arguments, checked, then the tensor viewed on the storage with public API."""
    ints = lambda v: isinstance(v, tuple) and all(isinstance(i, int) and i >= 0 for i in v)  # noqa: E731
    if not (isinstance(storage, torch.TypedStorage) and isinstance(offset, int) and offset >= 0 and ints(size)
            and ints(stride) and len(size) == len(stride) and isinstance(requires_grad, bool)):
        raise pickle.UnpicklingError("tensor arguments of unexpected types refused")
    if hooks or metadata:
        raise pickle.UnpicklingError("tensor hooks or metadata refused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n, dtype = storage.size(), storage.dtype
        last = offset + sum((d - 1) * s for d, s in zip(size, stride)) if all(size) else offset - 1
        if last >= n:
            raise pickle.UnpicklingError(f"tensor of size {size} reaching past its storage of {n} elements")
        return torch.empty(0, dtype=dtype).set_(storage.untyped(), offset, size, stride)


def _ordered_dict(*args):
    if args:
        raise pickle.UnpicklingError("OrderedDict with arguments refused")
    return collections.OrderedDict()


# the globals the published file names, each bound to the checked stand-in above
ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch.storage", "_load_from_bytes"): _storage,
    ("collections", "OrderedDict"): _ordered_dict,
}


@dataclass
class ImageNetPatchSet:
    """The published patches, cropped to their box: N×3×s×s in [0, 1], their targets and names."""

    patches: torch.Tensor
    targets: list[int]
    names: dict[int, str]
    patch_size: int
    canvas: int  # the side of the images they were optimised for (224)


def read(path: str | Path) -> ImageNetPatchSet:
    """The gzip'd pickle at ``path``, unpickled with :data:`ALLOWED` only and checked; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise PatchbenchError(f"ImageNet-Patch file not found: {path} (download {URL})")
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise PatchbenchError(f"cannot read {path}: not a gzip file ({type(exc).__name__})") from None
    if len(raw) > MAX_BYTES:
        raise PatchbenchError(f"{path} unpacks to more than {MAX_BYTES // 2 ** 20} MiB: not the ImageNet-Patch file")
    obj = safe_load(io.BytesIO(raw), path, allowed=ALLOWED)
    return _checked(obj, path)


def _checked(obj, path: Path) -> ImageNetPatchSet:
    def bad(what: str) -> PatchbenchError:
        return PatchbenchError(f"{path} is not an ImageNet-Patch file: {what}")

    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise bad("expected a tuple (patches, targets, info)")
    patches, targets, info = obj
    if not (isinstance(patches, torch.Tensor) and patches.ndim == 4 and patches.shape[1] == 3
            and patches.shape[2] == patches.shape[3] and patches.is_floating_point() and len(patches) >= 1):
        raise bad("patches must be a float tensor N×3×H×H")
    if not (torch.isfinite(patches).all() and patches.min() >= 0 and patches.max() <= 1):
        raise bad("patch pixels must lie in [0, 1]")
    if not (isinstance(targets, torch.Tensor) and targets.shape == (len(patches),) and torch.isfinite(targets.double()).all()
            and bool((targets.double() == targets.double().round()).all()) and bool((targets >= 0).all())):
        raise bad(f"targets must be a tensor of {len(patches)} class indices")  # the published file's are float32
    if not (isinstance(info, dict) and isinstance(info.get("patch_size"), int)):
        raise bad("info must be a dict with an integer patch_size")
    canvas, ps = patches.shape[-1], info["patch_size"]
    if not 2 <= ps <= canvas:
        raise bad(f"patch_size {ps} does not fit the {canvas} px canvas")
    # the reference's mask (ApplyPatch._generate_mask): rows and columns [H//2 - s//2, H//2 + s//2)
    lo, hi = canvas // 2 - ps // 2, canvas // 2 + ps // 2
    names = info.get("target_names") or {}
    names = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}
    return ImageNetPatchSet(patches[:, :, lo:hi, lo:hi].contiguous().float(), [int(t) for t in targets.tolist()],
                            names, hi - lo, canvas)


def candidates(given: str | None) -> list[Path]:
    """Where the file is looked for: ``given``, else ``$PATCHBENCH_IMAGENET_PATCH``,
    ``$PATCHBENCH_DATA/imagenet_patch.gz``, ``$PATCHBENCH_DATA/imagenet-patch/imagenet_patch.gz``,
    ``<cache>/imagenet_patch.gz`` (``$PATCHBENCH_CACHE`` or ``~/.cache/patchbench``)."""
    if given:
        return [Path(given)]
    found = [Path(v) for v in [os.environ.get("PATCHBENCH_IMAGENET_PATCH")] if v]
    if os.environ.get("PATCHBENCH_DATA"):
        base = Path(os.environ["PATCHBENCH_DATA"])
        found += [base / "imagenet_patch.gz", base / "imagenet-patch" / "imagenet_patch.gz"]
    return found + [cache_dir() / "imagenet_patch.gz"]


def find_file(given: str | None) -> Path:
    """The first of :func:`candidates` that exists; a one-line error naming them all and the download."""
    places = candidates(given)
    found = next((c for c in places if c.is_file()), None)
    if found is None:
        raise PatchbenchError(f"the ImageNet-Patch file is not in {', '.join(map(str, places))}: download {URL} "
                              "there, or set imagenet_patch.file (or $PATCHBENCH_IMAGENET_PATCH)")
    return found
