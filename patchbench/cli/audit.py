"""``patchbench audit``: the attack-failure audit of a preset's stored cells (Pintor et al. 2022's indicators,
Carlini et al. 2019's checks), explained cell by cell; ``--autoattack`` cross-checks an ε-bounded preset
with AutoAttack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from patchbench.cli import options as opt

out = Console(soft_wrap=True)

AuditPreset = Annotated[Optional[str], typer.Argument(
    help="Preset to audit (name or YAML). Omitted: explain every audited preset in --results.", show_default=False)]
Rerun = Annotated[bool, typer.Option("--rerun/--cached", help="Recompute the verdicts (default: only when the preset has none stored).")]
AuditN = Annotated[Optional[int], typer.Option("--n", help="Images per cell for the gradient and stability indicators (default: the preset's audit.n, 32).")]
AutoAttack = Annotated[bool, typer.Option("--autoattack", help="Cross-check the preset's L∞ evasion cells with AutoAttack (torchattacks; pip install -e '.\\[bench]').")]
AANImages = Annotated[Optional[int], typer.Option("--aa-n", help="With --autoattack: only the first N evaluation images.")]

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
        audit_preset(p, results, dev, n=n, progress=progress)
    _print(explain(results, [p.name]))


def _print(lines: list[str]) -> None:
    for line in lines:
        out.print(line, highlight=False, markup=False)
