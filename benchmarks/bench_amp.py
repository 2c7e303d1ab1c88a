"""Autocast evaluation (``--amp bf16|fp16``) against fp32: do the predictions agree, and how fast is it?

Runs the preset's grid (``patchbench sweep``: cached model and patches are reused, trained if
missing) once in fp32 and once per autocast dtype into the same results directory, then pairs every
autocast cell with its fp32 cell (the same key without ``amp``) and compares the stored per-image
predictions. Issue 12 asks for identical predictions on >= 99.5 % of the demo images; this prints
the agreement over all cells, the worst cell, the accuracy difference, and the ratio of the
engines' summed seconds (the same images, the same run, the same device).

    python benchmarks/bench_amp.py [--preset demo-fmnist] [--results results] [--amp bf16,fp16] [--csv out.csv]

On a CPU without native bf16/fp16 arithmetic autocast is usually *slower* than fp32 (the casts cost
and the kernels are emulated); the option is for GPUs, where tensor cores make it faster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine, row, write_rows  # noqa: E402

from patchbench.devices import resolve_device  # noqa: E402

from patchbench.runner.sweep import sweep  # noqa: E402
from patchbench.presets import load_preset  # noqa: E402
from patchbench.store.columns import key_columns  # noqa: E402
from patchbench.store.results import ResultStore  # noqa: E402


def agreement(store: ResultStore, cells: pd.DataFrame, amp: str) -> pd.DataFrame:
    """One row per ``amp`` cell with an fp32 twin (equal on every key field): images, images with the
    fp32 cell's prediction, both accuracies and both engines' seconds."""
    fp32 = cells[cells["amp"].isna()]
    twins = [k for k in key_columns() if k != "amp" and k in cells]
    pairs = cells[cells["amp"] == amp].merge(fp32, on=twins, suffixes=("", "_fp32"))  # NaN keys match NaN
    out = []
    for _, c in pairs.iterrows():
        a, b = store.load_predictions(c["run_id"]), store.load_predictions(c["run_id_fp32"])
        assert (a["index"].to_numpy() == b["index"].to_numpy()).all()
        out.append({"condition": c["condition"], "attack": c["attack"], "patch_px": c["patch_px"],
                    "defense": c["defense"], "lam": c["lam"], "n": len(a),
                    "same": int((a["pred"].to_numpy() == b["pred"].to_numpy()).sum()),
                    "acc_amp": c["accuracy"], "acc_fp32": c["accuracy_fp32"],
                    "seconds_amp": c["seconds"], "seconds_fp32": c["seconds_fp32"]})
    return pd.DataFrame(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo-fmnist")
    ap.add_argument("--results", default="results")
    ap.add_argument("--amp", default="bf16,fp16", help="comma list of autocast dtypes")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="preset override (repeatable)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()

    store = ResultStore(Path(args.results))
    sweep(load_preset(args.preset, args.sets), Path(args.results))  # fp32 (cached cells are reused)
    rows = []
    for amp in args.amp.split(","):
        p = load_preset(args.preset, args.sets + [f"model.amp={amp}"])
        sweep(p, Path(args.results))
        cells = store.load_cells()
        df = agreement(store, cells[cells["preset"] == p.name], amp)
        if df.empty:
            raise SystemExit(f"no {amp} cells with an fp32 twin under {args.results}")
        worst = df.assign(rate=df["same"] / df["n"]).sort_values("rate").iloc[0]
        rate = df["same"].sum() / df["n"].sum()
        dacc = (df["acc_amp"] - df["acc_fp32"]).abs().max() * 100
        print(f"{amp}: {len(df)} cells, {int(df['n'].sum())} predictions, identical {100 * rate:.2f} % "
              f"(worst cell {100 * worst['rate']:.2f} %: {worst['condition']} {worst['attack']} {worst['defense']} "
              f"λ={worst['lam']}), max |Δaccuracy| {dacc:.2f} pp")
        rows.append(row("amp", f"evaluation --amp {amp}: predictions identical {100 * rate:.2f} %",
                        f"{args.preset}: {len(df)} cells × {int(df['n'].iloc[0])} images",
                        df["seconds_amp"].sum(), "fp32 evaluation", df["seconds_fp32"].sum(),
                        note=f"goal: identical on >= 99.5 %; worst cell {100 * worst['rate']:.2f} %, "
                             f"max |Δacc| {dacc:.2f} pp; seconds: the engine's, summed over the cells "
                             f"as stored (cached fp32 cells keep the time of the run that made them)",
                        device=resolve_device(p.device)))
    df = write_rows(rows, args.csv)
    print(f"measured on {machine()}")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
