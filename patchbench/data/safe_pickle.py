"""Pickled data files read without running code: a restricted unpickler.

``pickle.load`` on a file a user downloaded from a mirror runs whatever the file's ``__reduce__``
says. The readers of pickled formats (CIFAR's python batches, ImageNet-Patch's gzip'd pickle) go
through :func:`safe_load` instead: the pickle machine still builds lists, dicts, str, bytes and
numbers, but a global it names is looked up only in the format's allow list (numpy's array
reconstruction by default) and anything else ends in one :class:`UnsafePickle` line naming the file
and the refused global, before that global is ever imported.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import numpy as np

from patchbench.errors import PatchbenchError


class UnsafePickle(PatchbenchError):
    """A pickled data file names a global its format never holds (it would run code)."""


def _dtype(*args, **kw) -> np.dtype:
    """``numpy.dtype`` without object dtypes (an object array's state is arbitrary Python objects)."""
    dt = np.dtype(*args, **kw)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"object dtype {dt} refused")
    return dt


# numpy's own reconstruction helpers live in private modules (numpy._core.*); these are the same steps
# on its public API: an empty array whose state pickle's BUILD then sets (ndarray.__setstate__), a
# scalar or an array (protocol 5) from its raw bytes


def _scalar(dtype: np.dtype, data: bytes = b"") -> Any:
    return np.frombuffer(data, dtype=_dtype(dtype), count=1)[0]


def _frombuffer(buf, dtype, shape, order, axis_order=None):
    """numpy's ``_core.numeric._frombuffer`` (protocol 5 arrays), on numpy's public API."""
    array = np.frombuffer(buf, dtype=_dtype(dtype))
    if order == "K" and axis_order is not None:
        return array.reshape(shape, order="C").transpose(axis_order)
    return array.reshape(shape, order=order)


def _reconstruct(cls, shape, dtype):
    """numpy's ``_reconstruct`` (an empty array the pickle's BUILD then fills with
    ``ndarray.__setstate__``), for plain ndarrays only."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"array class {cls!r} refused")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 2 pickles use it (a latin-1 str back to bytes), no other codec."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"codec {encoding!r} refused")
    return text.encode("latin1")


# numpy arrays as pickled by numpy 1.x and 2.x (protocols 2-5) and by Python 2 (``_codecs.encode``
# turns a latin-1 str back into bytes): the names a pickle may use -> what they resolve to here
NUMPY_GLOBALS: dict[tuple[str, str], Callable] = {
    **{(mod, "_reconstruct"): _reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


def _plain(obj: Any) -> Any:
    """``obj`` once no array in it holds Python objects (a dtype's pickled state could claim fields of
    object type that ``_dtype`` never saw)."""
    todo = [obj]
    while todo:
        x = todo.pop()
        if isinstance(x, np.ndarray) and x.dtype.hasobject:
            raise pickle.UnpicklingError(f"object dtype {x.dtype} refused")
        if isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            todo.extend(x)
    return obj


class _Restricted(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], allowed: Mapping[tuple[str, str], Callable], **kw):
        super().__init__(fh, **kw)
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} refused") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids refused")


def safe_load(fh: IO[bytes], where: str | Path, allowed: Mapping[tuple[str, str], Callable] | None = None,
              encoding: str = "latin1") -> Any:
    """Unpickle ``fh`` admitting only the globals in ``allowed`` (default :data:`NUMPY_GLOBALS`).

    ``where`` names the file in the one-line error: a refused global raises :class:`UnsafePickle`
    (nothing of it imported or called), a damaged stream a :class:`PatchbenchError`.
    """
    try:
        return _plain(_Restricted(fh, NUMPY_GLOBALS if allowed is None else allowed, encoding=encoding).load())
    except pickle.UnpicklingError as exc:
        if "refused" in str(exc):
            raise UnsafePickle(f"{where} is not a plain data pickle ({exc}): refused, nothing in it was run; "
                               "replace it with the official file") from None
        raise PatchbenchError(f"cannot read {where}: damaged pickle ({exc})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError, MemoryError) as exc:
        raise PatchbenchError(f"cannot read {where}: damaged pickle ({type(exc).__name__}: {exc})") from None
