"""Shared plumbing of the side-by-side speed benchmarks (``make bench``): one timer, one row format.

Every comparison is measured in one process, on the same images, same device and thread count,
patchbench and the peer interleaved (best of ``repeat`` after a warm-up), and reported as a ratio
``speedup = peer_s / patchbench_s`` (> 1: patchbench is faster). A script appends rows with
:func:`row` and writes them with :func:`write_rows`; ``benchmarks/report.py`` joins the CSVs of one
``make bench`` into one markdown table with the machine and date.

CSV columns (one row per comparison):

    suite, task, workload, patchbench_s, peer, peer_s, speedup, goal, meets_goal, note,
    device, threads

``goal`` is the speed-up an issue asks for (empty when none), ``note`` says what differs or where
the time goes when a goal is missed.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import pandas as pd
import torch

COLUMNS = ["suite", "task", "workload", "patchbench_s", "peer", "peer_s", "speedup", "goal", "meets_goal",
           "note", "device", "threads"]


def sync(device: torch.device | str | None = None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, repeat: int = 3, device=None, warmup: int = 1) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def timeit_pair(ours, peer, repeat: int = 3, device=None, warmup: int = 1) -> tuple[float, float]:
    """Best times of ``ours`` and ``peer``, interleaved run by run so that load on the machine hits both alike."""
    for _ in range(warmup):
        ours()
        peer()
    sync(device)
    best_ours = best_peer = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours()
        sync(device)
        t1 = time.perf_counter()
        peer()
        sync(device)
        t2 = time.perf_counter()
        best_ours, best_peer = min(best_ours, t1 - t0), min(best_peer, t2 - t1)
    return best_ours, best_peer


def row(suite: str, task: str, workload: str, patchbench_s: float, peer: str, peer_s: float,
        goal: float | None = None, note: str = "", device="cpu") -> dict:
    speedup = peer_s / patchbench_s if patchbench_s > 0 else float("nan")
    return {"suite": suite, "task": task, "workload": workload, "patchbench_s": round(patchbench_s, 5),
            "peer": peer, "peer_s": round(peer_s, 5), "speedup": round(speedup, 3),
            "goal": goal, "meets_goal": None if goal is None else bool(speedup >= goal), "note": note,
            "device": str(device), "threads": torch.get_num_threads()}


def write_rows(rows: list[dict], csv: str | Path | None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    if csv:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv, index=False)
    return df


def machine() -> str:
    """One line naming the machine: CPU model, cores, torch threads, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads{gpu}"
