"""Commands kept out of :mod:`patchbench.cli` for its length: ``patchbench claims``, each paper's claims checked on
the stored cells with paired tests (:mod:`patchbench.claims`); ``patchbench audit``, the attack-failure audit of a preset's stored cells (Pintor et al. 2022's
indicators, Carlini et al. 2019's checks), explained cell by cell; ``--autoattack`` cross-checks an
ε-bounded preset with AutoAttack; ``patchbench background-attack`` (AdvML 2019 Sec. 3); and
``patchbench leaderboard``. Registered by :mod:`patchbench.cli` from :data:`COMMANDS`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from patchbench import cli_options as opt

out = Console(soft_wrap=True)

AuditPreset = Annotated[Optional[str], typer.Argument(
    help="Preset to audit (name or YAML). Omitted: explain every audited preset in --results.", show_default=False)]
Rerun = Annotated[bool, typer.Option("--rerun/--cached", help="Recompute the verdicts, probing every cell again (default: only when the preset has none stored).")]
AuditN = Annotated[Optional[int], typer.Option("--n", help="Images per cell for the gradient and stability indicators (default: the preset's audit.n, 32).")]
AutoAttack = Annotated[bool, typer.Option("--autoattack", help="Cross-check the preset's L∞ evasion cells with AutoAttack (torchattacks; pip install -e '.\\[bench]').")]
AANImages = Annotated[Optional[int], typer.Option("--aa-n", help="With --autoattack: only the first N evaluation images.")]
BoardFormat = Annotated[str, typer.Option("--format", "-f", help="md (a markdown table) or json (entries keyed to merge across machines).")]
BoardMaxArea = Annotated[float, typer.Option("--max-area", help="The patch threat model: patches covering at most this % of the image.")]
BoardMerge = Annotated[Optional[List[Path]], typer.Option("--merge", help="A board (--format json) from another machine to merge in; repeatable.")]
BoardOut = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the board to this file (default: print it).")]


def audit_cmd(preset: AuditPreset = None, results: opt.Results = Path("results"), rerun: Rerun = False, n: AuditN = None,
              autoattack: AutoAttack = False, aa_n: AANImages = None, device: opt.Device = None,
              progress: opt.Progress = True):
    """Flag the numbers an attack that failed produced: unavailable gradients, unstable predictions,
    silent success, incomplete optimisation, transfer failure, non-monotonic accuracy (per cell,
    written beside the cells; tables mark them with †), then explain each flagged cell and what to run instead."""
    from patchbench.audit.runner import audit_path, audit_preset, explain
    from patchbench.devices import resolve_device
    from patchbench.presets import load_preset

    if preset is None:
        return _print(explain(results))
    p = load_preset(preset)
    dev = resolve_device(device or p.device)
    if autoattack:
        from patchbench.audit.autoattack import autoattack_check, render_autoattack

        return render_autoattack(autoattack_check(p, results, dev, aa_n, progress=progress), "rich")
    if rerun or not audit_path(results, p.name).exists():
        audit_preset(p, results, dev, n=n, progress=progress, rerun=rerun)
    _print(explain(results, [p.name]))


def claims_cmd(paper: opt.ClaimsPaper = None, results: opt.Results = Path("results"), preset_scale: opt.ClaimsScale = "demo",
               fmt: opt.ClaimsFmt = "rich"):
    """Do the papers' results reproduce? Each declared claim checked on the stored cells at one scale: holds,
    contradicted, inconclusive, not computed or unreliable, from a paired test (exact McNemar, or a paired
    bootstrap over images and patch seeds) with Holm's correction across a paper's claims."""
    import sys

    from patchbench.claims.check import check_claims
    from patchbench.claims.render import FORMATS, render_claims
    from patchbench.errors import PatchbenchError

    if fmt not in FORMATS:
        raise PatchbenchError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    sys.stdout.write(render_claims(check_claims(results, preset_scale, [paper] if paper else None), fmt, preset_scale) or "")


def _print(lines: list[str]) -> None:
    for line in lines:
        out.print(line, highlight=False, markup=False)


def background_attack_cmd(
        images: opt.BgImages, boxes: opt.BgBoxes, out_dir: opt.BgOutDir, model: opt.BgModel = "inception_v3",
        weights: opt.BgWeights = "DEFAULT", dataset: opt.BgDataset = "imagenet", image_size: opt.BgImageSize = 299,
        eps: opt.BgEps = 0.3, steps: opt.BgSteps = 100, step_size: opt.BgStepSize = None, seed: opt.BgSeed = 0,
        batch_size: opt.BgBatchSize = 8, device: opt.BgDevice = "auto"):
    """AdvML 2019 Sec. 3 (Tables 1-2): PGD on the background only (ε = 0 inside each image's box)
    against a pretrained classifier; writes the adversarial images and the natural-vs-adversarial table."""
    from patchbench import background

    out.print(background.run(images, boxes, out_dir, model, weights, dataset, image_size, eps, steps, step_size, seed,
                             batch_size, device))


def leaderboard_cmd(results: opt.Results = Path("results"), fmt: BoardFormat = "md", max_area: BoardMaxArea = 25.0,
                    merge: BoardMerge = None, out_file: BoardOut = None):
    """Per dataset × model × defense: clean accuracy, robust accuracy under the strongest attack found (any
    stored attack, adaptive ones included), certified accuracy, the audit's flags and the provenance."""
    from patchbench.report.leaderboard import leaderboard
    from patchbench.util import atomic_write

    text = leaderboard(results, fmt, max_area, merge)
    if out_file is not None:
        return out.print(f"wrote {atomic_write(out_file, text)}")
    print(text, end="")


COMMANDS = {"claims": claims_cmd, "audit": audit_cmd, "background-attack": background_attack_cmd, "leaderboard": leaderboard_cmd}
