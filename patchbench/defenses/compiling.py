"""``torch.compile`` for the inner loop of an iterative defense, opt-in (``patchbench --compile``).

An iterative defense written as eager torch ops makes one pass over the batch per op: TVM's Chambolle
iteration is 16 of them. ``torch.compile`` (inductor: C++/OpenMP on a CPU, Triton on a GPU) fuses
them into two kernels that read each buffer once (docs/BENCHMARKS.md has the measured speed-ups).
The results equal the eager ones up to float rounding (another summation order: ~1e-7 in float32).

Off by default, because the first call per input shape compiles, which takes seconds
(docs/BENCHMARKS.md, "Where the time goes"). That pays off on a long sweep or a benchmark, not on
a one-image ``defend``. Switched on by ``patchbench
--compile`` or ``PATCHBENCH_COMPILE=1``; each stored cell records it (column ``compiled``). Where
compiling fails (no C++ compiler, an unsupported platform), the defense warns once and runs eager.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Callable

import torch

SWITCH = {"on": os.environ.get("PATCHBENCH_COMPILE", "0") not in ("", "0", "false", "no")}


def enable(on: bool = True) -> None:
    """Switch compiling of the defenses' inner loops on (``patchbench --compile``) or off; the
    environment carries it to the worker processes a command starts (torchrun, ``sweep --workers``)."""
    SWITCH["on"] = bool(on)
    os.environ["PATCHBENCH_COMPILE"] = "1" if on else "0"


def enabled() -> bool:
    return SWITCH["on"]


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled by ``torch.compile`` on its first call; ``fn`` itself (eager) when compiling fails
    there, with one warning. Shapes: static for the first, dynamic from the second on (torch's default),
    so a sweep's shorter last batch does not recompile for every new size."""
    state: dict = {"fn": None}

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if state["fn"] is None:

            state["fn"] = torch.compile(fn)
            try:
                return state["fn"](*args, **kwargs)
            except Exception as e:  # inductor needs a C++ compiler (CPU) or Triton (GPU)
                warnings.warn(f"torch.compile failed for {fn.__name__} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              "running it eagerly", RuntimeWarning, stacklevel=2)
                state["fn"] = fn
        return state["fn"](*args, **kwargs)

    return call
