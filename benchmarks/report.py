"""Join the CSVs of one ``make bench`` (the row format of ``benchmarks/peers.py``) into one table.

    python benchmarks/report.py results/bench/*.csv --csv results/bench/bench.csv --md results/bench/bench.md

Prints the table (rich) and writes it as markdown with the machine and date on top, and the joined CSV.
Columns: task / workload / patchbench time / peer / peer time / speed-up / goal / met? / note.
The rows of suite ``calibration`` (``benchmarks/calibrate.py``) are not comparisons: they become its
one "calibration:" line, printed first and under the markdown's header (and stay in the joined CSV).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate import from_rows, line  # noqa: E402
from peers import COLUMNS, machine  # noqa: E402


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


HEAD = ["task", "workload", "patchbench", "peer", "peer time", "speed-up", "goal", "met?", "note"]


def cells(r) -> list[str]:
    """One row's printed cells, in the order of ``HEAD``."""
    goal = "" if pd.isna(r.goal) else (f"≥ {r.goal:g}×" if r.goal >= 1 else f"≤ {1 / r.goal:g}× (as 1/x)")
    met = "" if pd.isna(r.meets_goal) else ("✓" if str(r.meets_goal).lower() in ("true", "1", "1.0") else "✗")
    peer = "" if pd.isna(r.peer) else str(r.peer)
    peer_s = "" if pd.isna(r.peer_s) else fmt_time(r.peer_s)
    speedup = "" if pd.isna(r.speedup) else f"{r.speedup:.2f}×"
    return [r.task, r.workload, fmt_time(r.patchbench_s), peer, peer_s, speedup, goal, met,
            "" if pd.isna(r.note) else str(r.note)]


def markdown(df: pd.DataFrame, header: str) -> str:
    lines = [header, "", "| " + " | ".join(HEAD) + " |", "|---|---|---:|---|---:|---:|---|:-:|---|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in df.itertuples()]
    return "\n".join(lines) + "\n"


def print_rich(df: pd.DataFrame, header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=header, show_lines=False)
    for h in HEAD:
        table.add_column(h, justify="right" if h in ("patchbench", "peer time", "speed-up") else "left",
                         overflow="fold")
    for r in df.itertuples():
        table.add_row(*cells(r))
    Console(width=max(160, Console().width)).print(table)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csvs", nargs="+")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    frames = [pd.read_csv(f) for f in args.csvs if Path(f).exists() and Path(f).resolve() != Path(args.csv or "-").resolve()]
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    header = (f"Measured on {machine()} on {datetime.date.today().isoformat()} "
              f"(one run; speed-up = peer time / patchbench time, > 1: patchbench is faster)")
    c = from_rows(df)
    cal = line(c) if c else None
    if cal:
        print(cal)
    table = df[df["suite"] != "calibration"]
    text = markdown(table, header + (f"\n\n{cal}" if cal else ""))
    print_rich(table, header)
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
