"""``patchbench table``, ``report``, ``plot`` and ``leaderboard``: what the stored cells say, as a paper's tables
and figures, one report, or the leaderboard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from patchbench.cli import options as opt

out = Console(soft_wrap=True)  # a result line is one line, however narrow the pipe: paths never wrap

BoardFormat = Annotated[str, typer.Option("--format", "-f", help="md (a markdown table) or json (entries keyed to merge across machines).")]
BoardMaxArea = Annotated[float, typer.Option("--max-area", help="The patch threat model: patches covering at most this % of the image.")]
BoardMerge = Annotated[Optional[List[Path]], typer.Option("--merge", help="A board (--format json) from another machine to merge in; repeatable.")]
BoardOut = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the board to this file (default: print it).")]

def table(name: opt.TableName, results: opt.Results = Path("results"), preset: opt.TablePreset = None, fmt: opt.TableFmt = "rich",
          out_file: opt.TableOutFile = None):
    """Rebuild a paper table from stored cells, the paper's numbers beside ours."""
    from patchbench.reporting.lookup import table_report  # reason: deferred: `patchbench --help` imports no torch

    sys.stdout.write(table_report(name, results, preset, fmt, out_file) or "")  # rich: printed already


def report_cmd(preset_scale: opt.ReproducePresetScale = "demo", results: opt.Results = Path("results"), out_dir: opt.ReportOutDir = None):
    """Write RESULTS/SCALE/report.html (one self-contained page) and REPORT.md: every paper's tables (ours,
    the paper's, Δ, intervals), figures, provenance and known deviations, from the stored cells."""
    from patchbench.reporting.report import write_report  # reason: deferred: `patchbench --help` imports no torch

    out.print("wrote " + ", ".join(str(f) for f in write_report(results, preset_scale, out_dir)))


def plot(name: opt.PlotName, preset: opt.Preset = "demo-fmnist", results: opt.Results = Path("results"),
         out_file: opt.PlotOutFile = Path("figure.png"), params: opt.PlotParams = None):
    """Draw a paper figure from stored cells (PNG)."""
    from patchbench.config import parse_params  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.reporting.lookup import draw_figure  # reason: deferred: `patchbench --help` imports no torch

    out.print(f"wrote {draw_figure(name, preset, results, out_file, parse_params(params))}")


def leaderboard_cmd(results: opt.Results = Path("results"), fmt: BoardFormat = "md", max_area: BoardMaxArea = 25.0,
                    merge: BoardMerge = None, out_file: BoardOut = None):
    """Per dataset × model × defense: clean accuracy, robust accuracy under the strongest attack found (any
    stored attack, adaptive ones included), certified accuracy, the audit's flags and the provenance."""
    from patchbench.reporting.leaderboard import leaderboard  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.util import atomic_write  # reason: deferred: `patchbench --help` imports no torch

    text = leaderboard(results, fmt, max_area, merge)
    if out_file is not None:
        return out.print(f"wrote {atomic_write(out_file, text)}")
    print(text, end="")
