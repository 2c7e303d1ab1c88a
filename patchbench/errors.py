"""The one exception type the CLI turns into a one-line message and exit code 2, and the small
checks every validator uses to raise it."""

from __future__ import annotations

import math
import os
from pathlib import Path


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


# Bounds on what one request may expand to, each raised by an environment variable (named in the message).
LIMITS = {"lambdas": ("PATCHBENCH_MAX_LAMBDAS", 10_000), "cells": ("PATCHBENCH_MAX_CELLS", 200_000)}


def limit(name: str) -> int:
    var, default = LIMITS[name]
    try:
        return int(os.environ.get(var, default))
    except ValueError:
        raise PatchbenchError(f"${var} must be an integer, got {os.environ[var]!r}") from None


def check_limit(name: str, count: int, what: str) -> None:
    """Refuse a request that expands to more than the limit ``name`` allows, before expanding it."""
    var, _ = LIMITS[name]
    cap = limit(name)
    if count > cap:
        raise PatchbenchError(f"{what} expands to {count:,} {name}, over the limit of {cap:,} "
                              f"(set ${var} to raise it)")


def check_writable_dir(path: str | Path, what: str, writable: bool = True) -> Path:
    """``path`` is a directory or can be created as one, and can be written to; checked (nothing is
    created) before any work, so a bad location fails in a second, not after training."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail later
            raise PatchbenchError(f"{what} {path}: {probe} is a broken symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise PatchbenchError(f"{what} {path}: {probe} is a file, not a directory")
    if writable and probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PatchbenchError(f"{what} {path}: {probe} is not writable")
    return path
