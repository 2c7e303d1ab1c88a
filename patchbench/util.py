"""Helpers every layer shares, each written once: atomic writes, eval mode, stable hashes, the
stderr console and its progress bars."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch.nn as nn
from rich.console import Console

_HOST = "".join(c if c.isalnum() else "_" for c in __import__("socket").gethostname()) or "host"
STALE_AFTER_S = 3600.0  # another host's temp files are left alone for this long


console = Console(stderr=True, soft_wrap=True)  # progress and result lines of long work (stdout stays for data)
LOG_INTERVAL_S = 60.0  # a progress bar writing into a file or pipe: at most one line a minute


def progress_bar(iterable=None, enabled: bool = True, **kw):
    """A tqdm bar on stderr. On a terminal it redraws in place; into a log (stderr not a terminal)
    it writes at most one line every :data:`LOG_INTERVAL_S` seconds and its final state, so a
    150-step patch does not write 150 lines into a pipe. ``enabled=False``: no bar at all."""
    from tqdm.auto import tqdm  # reason: tqdm.auto probes for notebooks; only a progress bar needs it

    tty = sys.stderr.isatty()
    kw.setdefault("leave", not tty)
    return tqdm(iterable, disable=not enabled, mininterval=0.1 if tty else LOG_INTERVAL_S, file=sys.stderr, **kw)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file and ``os.replace``.

    A killed writer leaves either the old file or the new one, never half a file; the temp name
    carries the host and pid (``.NAME.tmpHOST-PID``) so concurrent writers, on one machine or on a
    shared filesystem, never share it. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp{_HOST}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, a lost permission, Ctrl-C: no temp left behind to fill it further
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):  # the file meant, not the hidden temp
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # (patchbench.faults names it)
        raise
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path, stale_after_s: float = STALE_AFTER_S) -> None:
    """Delete the leftovers of killed :func:`atomic_write` calls in ``folder``: this host's temps whose
    writer is no longer running, and any temp older than ``stale_after_s`` — never the temp file of a
    writer that is still at work (concurrent shards writing into one results directory)."""

    now = time.time()
    for tmp in folder.glob(".*.tmp*"):
        tag = tmp.name.rsplit(".tmp", 1)[-1]
        host, _, pid = tag.rpartition("-")
        host = host or _HOST  # a temp named by an older patchbench (pid only) was written on this host
        mine_and_dead = host == _HOST and pid.isdigit() and not _pid_alive(int(pid))
        try:
            old = now - tmp.stat().st_mtime > stale_after_s
        except FileNotFoundError:
            continue  # its writer just renamed it
        if mine_and_dead or old:
            tmp.unlink(missing_ok=True)


@contextmanager
def eval_mode(model: nn.Module):
    """Run ``model`` in eval mode and give it back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def tensors_id(named: dict[str, Any]) -> str:
    """Content hash of named tensors (a state dict): each name and its bytes, in sorted name order, first 16
    hex digits of sha256. A model's id in run ids, checked again whenever a stored checkpoint is loaded."""
    h = hashlib.sha256()
    for k, v in sorted(named.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), first ``n`` hex digits."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def save_png(fig, out: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""

    import matplotlib.pyplot as plt  # reason: matplotlib takes a second to import; only a figure needs it

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write(out, buf.getvalue())
