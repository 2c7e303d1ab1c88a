"""ICAART 2022 Fig. 9: runtime of every registered defense on the same N images, same device.

Each defense processes the same images in batches (maps + apply at one λ, as in a sweep) and
is timed end to end including its classifier passes (SLGS/WLGS/DW need a saliency backward),
best of ``--repeat`` runs after a warm-up. Printed as a table (images/s and time relative to
LGS) and saved as CSV. The classifier is the preset's architecture with random weights: the cost
does not depend on the weights.

With ``--keep`` (``make demo``), a CSV at ``--csv`` that already holds this workload's timing is
printed and kept instead of timed again: its ``workload`` column is a hash of the arguments, the
machine (CPU or GPU name, torch threads), the libraries' versions (torch and the peers) and the
source of patchbench and of these benchmark scripts, so any change of code, machine or arguments
times it anew (a rerun of the demo recomputes nothing; issue 36).

    python benchmarks/bench_defenses.py [--preset demo-fmnist] [--n 256] [--device cpu|cuda] [--csv out.csv] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers_defenses import peer_for  # noqa: E402

import patchbench  # noqa: E402
from patchbench.data import eval_indices, iterate, load_split  # noqa: E402
from patchbench.defenses import DEFENSES, build_defense  # noqa: E402
from patchbench.devices import cpu_name  # noqa: E402
from patchbench.errors import PatchbenchError  # noqa: E402
from patchbench.models import build_classifier  # noqa: E402
from patchbench.presets import load_preset  # noqa: E402
from patchbench.util import atomic_write, stable_hash  # noqa: E402

# the libraries whose code runs in a row: patchbench's side (torch) and the peers' (bench_peers_defenses.peer_for)
TIMED_LIBRARIES = ("torch", "numpy", "scipy", "scikit-image", "pillow")


def images_for(preset, n: int, device: torch.device) -> torch.Tensor:
    """The first ``n`` images of the preset's evaluation subset; random images if the data is absent."""
    d = preset.data
    try:
        source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
        idx = eval_indices(len(source), n, d.eval_seed)
        return torch.cat([x for _, x, _ in iterate(source, idx, d.image_size, n, device)])
    except PatchbenchError:
        channels = 1 if d.dataset in ("mnist", "fashion-mnist") else 3
        return torch.rand(n, channels, d.image_size, d.image_size, generator=torch.Generator().manual_seed(0)).to(device)


def timeit(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up (kernels, caches, codec init)
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def source_digest() -> str:
    """sha256 of every Python file of the installed patchbench package and of this folder's scripts, by path."""
    h = hashlib.sha256()
    for root in (Path(patchbench.__file__).resolve().parent, Path(__file__).resolve().parent):
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def workload_key(args, device: torch.device) -> str:
    """What the timings of a run depend on (module docstring): equal keys, equal workload on the same machine and code."""
    def version(lib):
        try:
            return metadata.version(lib)
        except metadata.PackageNotFoundError:
            return None

    measured = {k: getattr(args, k) for k in ("preset", "n", "batch", "lam", "repeat", "defenses")}
    return stable_hash({"args": measured, "device": device_name(device), "cpu": cpu_name(),
                        "libraries": {lib: version(lib) for lib in TIMED_LIBRARIES}, "source": source_digest()}, 16)


def kept_timing(csv: str | None, key: str) -> pd.DataFrame | None:
    """The CSV at ``csv`` if every row of it was timed under ``key``, else None (absent, unreadable or another workload)."""
    if csv is None or not Path(csv).is_file():
        return None
    try:
        df = pd.read_csv(csv)
    except (OSError, ValueError):
        return None
    return df if "workload" in df and len(df) and (df["workload"] == key).all() else None


def print_table(df: pd.DataFrame, preset: str, note: str = "") -> None:
    n, size, dev = int(df["n"].iloc[0]), int(df["image_size"].iloc[0]), df["device"].iloc[0]
    table = Table(title=f"Defense runtime on {n} images of {preset} at {size} px, {dev} (ICAART Fig. 9){note}")
    for col in ("defense", "seconds", "images_per_s", "time_vs_lgs", "peer", "peer_seconds", "peer_speedup"):
        if col in df:
            table.add_column(col, justify="left" if col in ("defense", "peer") else "right")
    for r in df.itertuples():
        peer = (r.peer, f"{r.peer_seconds:.3f}", f"{r.peer_speedup:.2f}×") if isinstance(r.peer, str) and r.peer else ("", "", "")
        table.add_row(r.defense, f"{r.seconds:.3f}", f"{r.images_per_s:.0f}", f"{getattr(r, 'time_vs_lgs', float('nan')):.2f}×", *peer)
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo-fmnist", help="whose data, model and LGS/SLGS/WLGS parameters")
    ap.add_argument("--n", type=int, default=256, help="images (paper: 5000)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lam", type=float, default=2.3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    # Fig. 9 times input transforms; PatchCleanser classifies 1 + k² (+ k⁴) masked copies of each image, its
    # cost is the certified stage's (reproduce's stage summary): name it with --defenses to time it here
    ap.add_argument("--defenses", default=",".join(n for n in DEFENSES if n not in ("none", "patchcleanser")))
    ap.add_argument("--csv", default=None)
    ap.add_argument("--keep", action="store_true",
                    help="a --csv already timed for this workload, machine and code is printed and kept, not timed again")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    key = workload_key(args, device)
    if args.keep and (kept := kept_timing(args.csv, key)) is not None:
        print_table(kept, args.preset, f"; kept from {kept['timed_at'].iloc[0]}")
        print(f"kept {args.csv}: timed before for this workload, machine and code (delete it, or leave out --keep, to time again)")
        return
    preset = load_preset(args.preset)
    model = build_classifier(preset.model.arch, preset.data.dataset, None, preset.data.image_size)
    model = model.to(device).eval().requires_grad_(False)
    if preset.model.channels_last and preset.model.volumize is None:  # as the runner builds it for a sweep
        model = model.to(memory_format=torch.channels_last)
    x = images_for(preset, args.n, device)
    params = {d.name: d.params for d in preset.defenses}
    rows = []
    for name in [s.strip() for s in args.defenses.split(",") if s.strip()]:
        defense = build_defense(name, params.get(name, {}), model)

        def run(defense=defense):
            for i in range(0, len(x), args.batch):
                xb = x[i:i + args.batch]
                out = defense.apply(xb, defense.maps(xb, model), args.lam)
                del out

        seconds = timeit(run, device, args.repeat)
        row = {"defense": name, "params": str(defense.params()), "n": len(x), "seconds": round(seconds, 4),
               "images_per_s": round(len(x) / seconds, 1), "peer": "", "peer_seconds": None}
        peer = peer_for(name, params.get(name, {}), args.lam) if device.type == "cpu" else None
        if peer is not None:  # the library this defense replaces, on the same images (CPU: the libraries' device)
            x_np = x.cpu().numpy()
            row["peer"] = peer[0]
            row["peer_seconds"] = round(timeit(lambda: [peer[1](x_np[i:i + args.batch]) for i in range(0, len(x_np), args.batch)],
                                               device, args.repeat), 4)
        rows.append(row)
    df = pd.DataFrame(rows)
    if "lgs" in set(df["defense"]):
        base = float(df.loc[df["defense"] == "lgs", "seconds"].iloc[0])
        df["time_vs_lgs"] = (df["seconds"] / base).round(2)
    df["device"] = device_name(device)
    df["image_size"] = preset.data.image_size
    df["peer_speedup"] = (df["peer_seconds"] / df["seconds"]).round(2)
    df["workload"] = key
    df["timed_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print_table(df, args.preset)
    if args.csv:  # whole or not at all: --keep must never keep half a table that carries the key
        atomic_write(args.csv, df.to_csv(index=False))
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
