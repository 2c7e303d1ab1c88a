"""Which device a command runs on, with torch's deterministic settings switched on first."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

from patchbench.defenses import compiling
from patchbench.errors import PatchbenchError

STRICT = {"on": False}  # set by `patchbench --deterministic`


def deterministic() -> None:
    """Deterministic algorithms where torch offers them (cuBLAS workspace, cuDNN without
    autotuning, ``use_deterministic_algorithms`` warning where an op has none). On the CPU every
    op patchbench uses is deterministic already; on a GPU this removes the avoidable variation."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # must precede the first cuBLAS call
    torch.backends.cudnn.benchmark = False
    if compiling.enabled() or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=not STRICT["on"])
    else:  # torch's call also sets inductor's flag, importing torch._inductor and torch._dynamo for it (3 s on a
        # CPU, longer than a small sweep's work); with nothing compiled, the flag it sets for eager ops is all there is
        torch._C._set_deterministic_algorithms(True, warn_only=not STRICT["on"])


def strict_determinism(threads: int = 1) -> None:
    """``patchbench --deterministic``: one machine's reruns bit-identical, whatever its core count or load.

    On top of :func:`deterministic`: an op without a deterministic implementation raises instead of
    warning, cuDNN picks deterministic kernels, and torch uses a fixed number of CPU threads
    (``threads``, 1 by default): a float reduction split over a different number of threads sums in a
    different order, and a last-bit difference in a training step grows into a different model. Cost:
    the CPU work runs on one core (the AdvML demo: 1.77× the wall time on 2 cores, results/README.md). Other machines can still differ —
    another CPU's vector width or another torch build changes the kernels themselves."""
    STRICT["on"] = True
    torch.set_num_threads(threads)
    torch.backends.cudnn.deterministic = True
    deterministic()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's word for it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What a number depends on beyond the code and the seeds: the CPU, torch's thread count
    (a float sum split over another number of threads adds in another order), torch's version and
    whether the defenses' inner loops were compiled (``patchbench --compile``: other kernels, equal up to
    rounding). Every stored cell carries it (columns ``cpu``, ``threads``, ``torch``, ``compiled``) and
    every table prints it."""

    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "compiled": compiling.enabled()}


def resolve_device(name: str) -> torch.device:
    """The device of ``name`` (auto: CUDA when available); switches on :func:`deterministic`."""
    deterministic()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PatchbenchError(f"device {name} requested but CUDA is not available")
    return torch.device(name)

