"""Join the CSVs of one ``make bench`` (the row format of ``benchmarks/peers.py``) into one table.

    python benchmarks/report.py results/bench/*.csv --csv results/bench/bench.csv --md results/bench/bench.md

Prints the table and writes it as markdown with the machine and date on top, and the joined CSV.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import COLUMNS, machine  # noqa: E402


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def markdown(df: pd.DataFrame, header: str) -> str:
    lines = [header, "", "| task | workload | patchbench | peer | peer time | speed-up | goal | note |",
             "|---|---|---:|---|---:|---:|---|---|"]
    for r in df.itertuples():
        goal = "" if pd.isna(r.goal) else (f"≥ {r.goal:g}×" if r.goal >= 1 else f"≤ {1 / r.goal:g}× (as 1/x)")
        met = "" if pd.isna(r.meets_goal) else (" ✓" if bool(r.meets_goal) else " ✗")
        lines.append(f"| {r.task} | {r.workload} | {fmt_time(r.patchbench_s)} | {r.peer} | {fmt_time(r.peer_s)} | "
                     f"{r.speedup:.2f}× | {goal}{met} | {'' if pd.isna(r.note) else r.note} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csvs", nargs="+")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    frames = [pd.read_csv(f) for f in args.csvs if Path(f).exists() and Path(f).resolve() != Path(args.csv or "-").resolve()]
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    header = (f"Measured on {machine()}, {datetime.date.today().isoformat()} "
              f"(one run; speed-up = peer time / patchbench time, > 1: patchbench is faster)")
    text = markdown(df, header)
    print(text)
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
