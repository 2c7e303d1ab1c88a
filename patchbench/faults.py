"""How a command ends when it cannot finish: one line on stderr saying what was kept and how to go on.

A long run meets faults that are no bug of patchbench: the disk fills up, a permission is lost, the
results directory is removed under it, the user presses Ctrl-C or a scheduler sends SIGTERM. Every
file patchbench writes goes through a hidden temporary name and a rename (``util.atomic_write``), so
whatever was finished before the fault is whole and a rerun of the same command picks it up: cells
are skipped, models and patches loaded, a training resumes after its last finished epoch. The CLI's
``main`` hands any exception to :func:`ending`, which says so in one line (a traceback only with
``patchbench --debug``):

* ``PatchbenchError`` (bad input, a damaged artifact): ``error: ...``, exit 2;
* ``OSError`` (disk full, file size limit, permission denied, a folder gone): ``error: ...`` with the
  file, what was kept and how to resume, exit 2;
* Ctrl-C / SIGINT and SIGTERM: ``aborted: ...``, exit 128 + the signal's number (130 for SIGINT, 143 for
  SIGTERM: what a shell reports for a process the signal ended, so a scheduler can tell them apart).
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Any, Callable

import typer

from patchbench.errors import PatchbenchError

RESUME = "rerun the same command: finished cells, models, patches and training epochs are kept"

DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file size limit reached"}
NO_ACCESS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.EROFS: "read-only file system"}

debug = False  # `patchbench --debug`: the traceback before the one line
_received: list[int] = []  # the signals that interrupted this command


def run(command: Callable[[], Any]) -> int:
    """Run a CLI command; its exit code, after the one line of how it ended when it did not finish.

    Typer turns a KeyboardInterrupt inside a command into exit code 130 without a word (its
    ``standalone_mode=False`` returns the code): the handlers of :func:`interrupts` remember the signal,
    so the line is still written, here."""
    with interrupts():
        try:
            rv = command()
            end = interrupted_line() if _received else None
        except KeyboardInterrupt:  # before Typer took over (loading plugins)
            end = interrupted_line()
        except Exception as exc:
            if (end := ending(exc)) is None:
                raise  # a bug: its traceback
            if debug:
                traceback.print_exc()
    if end is None:
        return rv if isinstance(rv, int) else 0
    sys.stderr.write(end[0] + "\n")
    return end[1]


def disk_line(exc: OSError) -> str:
    """The one line of an OSError: what happened to which file, what was kept, how to resume."""
    where = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in DISK_FULL:
        return (f"{DISK_FULL[exc.errno]}{where}: nothing half-written was kept; free some space (or choose another "
                f"--results), then {RESUME}")
    if exc.errno in NO_ACCESS:
        return (f"{NO_ACCESS[exc.errno]}{where}: nothing half-written was kept; restore write access (or choose another "
                f"--results), then {RESUME}")
    if exc.errno == errno.ENOENT:
        return f"{exc.filename or 'a file or folder'} disappeared during the run (removed?); {RESUME}"
    return f"{exc.strerror or exc}{where} (--debug shows the traceback); {RESUME}"


def ending(exc: BaseException) -> tuple[str, int] | None:
    """(the one line, the exit code) for an exception a command ended with; None for a bug (its traceback stays)."""

    if isinstance(exc, PatchbenchError):
        return f"error: {' '.join(str(exc).split())}", 2
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        return interrupted_line()
    if isinstance(exc, typer.TyperException):  # usage errors and bad parameters
        return f"error: {' '.join(exc.format_message().split())}", 2
    if isinstance(exc, OSError):
        return f"error: {disk_line(exc)}", 2
    return None


def interrupted_line() -> tuple[str, int]:
    """The line and exit code of an interrupted command (SIGINT when no handled signal was seen: a plain Ctrl-C)."""
    sig = _received[0] if _received else signal.SIGINT
    return f"aborted: {signal.Signals(sig).name} received; {RESUME}", 128 + sig


def _as_interrupt(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextmanager
def interrupts():
    """SIGINT and SIGTERM raise KeyboardInterrupt (so ``finally`` blocks and atomic writes clean up, and the
    command ends with :func:`interrupted_line`), the signal remembered; the previous handlers come back
    after. A signal the process ignores (``nohup``, a background job) stays ignored."""
    global debug
    debug = False
    _received.clear()
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, handler in before.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, _as_interrupt)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
