"""``patchbench table``, ``report``, ``plot``, ``leaderboard``, ``claims`` and ``audit``: what the stored cells say (a
paper's tables and figures, one report, the leaderboard, each paper's claims checked with paired tests) and where not
to trust them: the attack-failure audit (Pintor et al. 2022's
indicators, Carlini et al. 2019's checks), explained cell by cell; ``--autoattack`` cross-checks an ε-bounded preset
with AutoAttack."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from patchbench.cli import options as opt
from patchbench.errors import PatchbenchError

out = Console(soft_wrap=True)  # a result line is one line, however narrow the pipe: paths never wrap

BoardFormat = Annotated[str, typer.Option("--format", "-f", help="md (a markdown table) or json (entries keyed to merge across machines).")]
BoardMaxArea = Annotated[float, typer.Option("--max-area", help="The patch threat model: patches covering at most this % of the image.")]
BoardMerge = Annotated[Optional[List[Path]], typer.Option("--merge", help="A board (--format json) from another machine to merge in; repeatable.")]
BoardOut = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the board to this file (default: print it).")]
AuditPreset = Annotated[Optional[str], typer.Argument(
    help="Preset to audit (name or YAML). Omitted: explain every audited preset in --results.", show_default=False)]
Rerun = Annotated[bool, typer.Option("--rerun/--cached", help="Recompute the verdicts, probing every cell again (default: only when the preset has none stored).")]
AuditN = Annotated[Optional[int], typer.Option("--n", help="Images per cell for the gradient and stability indicators (default: the preset's audit.n, 32).")]
AutoAttack = Annotated[bool, typer.Option("--autoattack", help="Cross-check the preset's L∞ evasion cells with AutoAttack (torchattacks; pip install -e '.\\[bench]').")]
AANImages = Annotated[Optional[int], typer.Option("--aa-n", help="With --autoattack: only the first N evaluation images.")]


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


def audit_cmd(preset: AuditPreset = None, results: opt.Results = Path("results"), rerun: Rerun = False, n: AuditN = None,
              autoattack: AutoAttack = False, aa_n: AANImages = None, device: opt.Device = None,
              progress: opt.Progress = True):
    """Flag the numbers an attack that failed produced: unavailable gradients, unstable predictions,
    silent success, incomplete optimisation, transfer failure, non-monotonic accuracy (per cell,
    written beside the cells; tables mark them with †), then explain each flagged cell and what to run instead."""
    from patchbench.sections.audit import audit_path, audit_preset, explain  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.devices import resolve_device  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.presets import load_preset  # reason: deferred: `patchbench --help` imports no torch

    if preset is None:
        return _print(explain(results))
    p = load_preset(preset)
    dev = resolve_device(device or p.device)
    if autoattack:
        from patchbench.runner.autoattack import autoattack_check, render_autoattack  # reason: deferred: `patchbench --help` imports no torch

        return render_autoattack(autoattack_check(p, results, dev, aa_n, progress=progress), "rich")
    if rerun or not audit_path(results, p.name).exists():
        audit_preset(p, results, dev, n=n, progress=progress, rerun=rerun)
    _print(explain(results, [p.name]))


def claims_cmd(paper: opt.ClaimsPaper = None, results: opt.Results = Path("results"), preset_scale: opt.ClaimsScale = "demo",
               fmt: opt.ClaimsFmt = "rich"):
    """Do the papers' results reproduce? Each declared claim checked on the stored cells at one scale: holds,
    contradicted, inconclusive, not computed or unreliable, from a paired test (exact McNemar, or a paired
    bootstrap over images and patch seeds) with Holm's correction across a paper's claims."""
    from patchbench.reporting.claim_checks import check_claims  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.claims.render import FORMATS, render_claims  # reason: deferred: `patchbench --help` imports no torch

    if fmt not in FORMATS:
        raise PatchbenchError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    sys.stdout.write(render_claims(check_claims(results, preset_scale, [paper] if paper else None), fmt, preset_scale) or "")


def _print(lines: list[str]) -> None:
    for line in lines:
        out.print(line, highlight=False, markup=False)
