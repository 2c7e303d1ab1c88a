"""The one exception type the CLI turns into a one-line message and exit code 2, and the small
checks every validator uses to raise it."""

from __future__ import annotations

import math


class PatchbenchError(Exception):
    """Bad input from the user (names, files, values). The CLI prints ``error: <msg>`` and exits 2."""


def check(cond: bool, msg: str) -> None:
    """Raise :class:`PatchbenchError` with ``msg`` unless ``cond``."""
    if not cond:
        raise PatchbenchError(msg)


def is_number(v) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
