"""One line that states the machine (issue 36): a fixed matmul and a fixed small_vgg training epoch.

``make bench`` prints it first and writes it into the bench CSV and markdown, and results/README.md
states its time goals as multiples of the epoch, so two machines' timings can be compared: a
machine whose epoch takes twice as long is expected to take about twice as long for everything
the demo and the tests do on the CPU (both are dominated by small convolutions like these).

* **matmul**: C = A·B of two fixed 2048×2048 float32 matrices (2·2048³ FLOP), best of 5 after a
  warm-up, in GFLOP/s — the machine's dense-arithmetic peak as torch reaches it.
* **epoch**: ``small_vgg`` (the ICAART demo's classifier, 64 px, 1 channel, 10 classes,
  channels_last as the demo preset trains it) from a fixed initialisation (seed 0), one epoch of
  Adam (lr 1e-3) on 2048 fixed synthetic images (seeded uniform noise, seeded labels) in batches of
  128 — 16 forward/backward/steps, the demo's training loop without its data loading; the faster
  of two epochs after two warm-up steps, in seconds.

Both use torch's thread count (``--threads``; default torch's own, which is what ``make demo`` and
the test suite run with) and the line names it, with the 1-minute load average (above the core
count, other processes were sharing the CPU and the line overstates the machine's times).

    python benchmarks/calibrate.py [--threads N] [--csv calibration.csv]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import write_rows  # noqa: E402

from patchbench.devices import cpu_name  # noqa: E402

MATMUL_N = 2048
EPOCH_IMAGES, EPOCH_BATCH, EPOCH_SIZE = 2048, 128, 64


def matmul_gflops(repeat: int = 5) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(MATMUL_N, MATMUL_N, generator=g)
    b = torch.rand(MATMUL_N, MATMUL_N, generator=g)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * MATMUL_N ** 3 / best / 1e9


def vgg_epoch_seconds(epochs: int = 2) -> float:
    from patchbench.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier("small_vgg", "fashion-mnist", None, EPOCH_SIZE).to(memory_format=torch.channels_last).train()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(EPOCH_IMAGES, 1, EPOCH_SIZE, EPOCH_SIZE, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (EPOCH_IMAGES,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(lo: int) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[lo:lo + EPOCH_BATCH]), y[lo:lo + EPOCH_BATCH]).backward()
        opt.step()

    step(0)
    step(EPOCH_BATCH)
    best = float("inf")
    for _ in range(epochs):
        t0 = time.perf_counter()
        for lo in range(0, EPOCH_IMAGES, EPOCH_BATCH):
            step(lo)
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate() -> dict:
    """The two measurements, the thread count and the load average."""
    gflops = matmul_gflops()
    epoch = vgg_epoch_seconds()
    return {"matmul_gflops": gflops, "epoch_s": epoch, "threads": torch.get_num_threads(),
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")}


def line(c: dict) -> str:
    return (f"calibration: matmul {MATMUL_N}² fp32 {c['matmul_gflops']:.1f} GFLOP/s; small_vgg epoch "
            f"({EPOCH_IMAGES} synthetic {EPOCH_SIZE} px images, batch {EPOCH_BATCH}, Adam) {c['epoch_s']:.2f} s; "
            f"{c['threads']} torch threads, load {c['load']:.2f}; {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}")


def rows(c: dict) -> list[dict]:
    """The calibration as two rows of the bench CSV (suite ``calibration``, no peer)."""
    common = {"suite": "calibration", "peer": None, "peer_s": None, "speedup": None, "goal": None,
              "meets_goal": None, "device": "cpu", "threads": c["threads"]}
    note = f"load {c['load']:.2f}"
    return [
        {**common, "task": "calibration: matmul", "workload": f"{MATMUL_N}×{MATMUL_N} fp32",
         "patchbench_s": 2 * MATMUL_N ** 3 / c["matmul_gflops"] / 1e9,
         "note": f"{c['matmul_gflops']:.1f} GFLOP/s; {note}"},
        {**common, "task": "calibration: small_vgg epoch", "workload": f"{EPOCH_IMAGES}×1×{EPOCH_SIZE}×{EPOCH_SIZE}, "
         f"batch {EPOCH_BATCH}, Adam", "patchbench_s": c["epoch_s"], "note": note},
    ]


def from_rows(df) -> dict | None:
    """The calibration back from the rows of a bench CSV (a pandas frame; None when it has none)."""
    cal = df[df["suite"] == "calibration"].set_index("task")
    if not {"calibration: matmul", "calibration: small_vgg epoch"} <= set(cal.index):
        return None
    mm, ep = cal.loc["calibration: matmul"], cal.loc["calibration: small_vgg epoch"]
    load = str(ep["note"]).rpartition("load ")[2]
    return {"matmul_gflops": 2 * MATMUL_N ** 3 / float(mm["patchbench_s"]) / 1e9, "epoch_s": float(ep["patchbench_s"]),
            "threads": int(ep["threads"]), "load": float(load) if load.replace(".", "", 1).isdigit() else float("nan")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be >= 1", file=sys.stderr)
            sys.exit(2)
        torch.set_num_threads(args.threads)
    c = calibrate()
    print(line(c), flush=True)
    write_rows(rows(c), args.csv)


if __name__ == "__main__":
    main()
