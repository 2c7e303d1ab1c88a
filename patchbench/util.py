"""Helpers every layer shares, each written once: atomic writes, eval mode, stable hashes."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.nn as nn


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file and ``os.replace``.

    A killed writer leaves either the old file or the new one, never half a file; the temp name
    carries the pid so concurrent writers never share it. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def remove_stale_temps(folder: Path) -> None:
    """Delete the leftovers of killed :func:`atomic_write` calls in ``folder``."""
    for stale in folder.glob(".*.tmp*"):
        stale.unlink(missing_ok=True)


@contextmanager
def eval_mode(model: nn.Module):
    """Run ``model`` in eval mode and give it back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), first ``n`` hex digits."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def save_png(fig, out: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write(out, buf.getvalue())
