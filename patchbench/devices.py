"""Which device a command runs on, with torch's deterministic settings switched on first."""

from __future__ import annotations

import os

import torch

from patchbench.errors import PatchbenchError


def deterministic() -> None:
    """Deterministic algorithms where torch offers them (cuBLAS workspace, cuDNN without
    autotuning, ``use_deterministic_algorithms`` warning where an op has none). On the CPU every
    op patchbench uses is deterministic already; on a GPU this removes the avoidable variation."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # must precede the first cuBLAS call
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    """The device of ``name`` (auto: CUDA when available); switches on :func:`deterministic`."""
    deterministic()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PatchbenchError(f"device {name} requested but CUDA is not available")
    return torch.device(name)

