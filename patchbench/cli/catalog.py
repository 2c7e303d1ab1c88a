"""What ``patchbench list`` shows: every registry as a rich table."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from patchbench.cli import options as opt
from patchbench.errors import PatchbenchError

out = Console(soft_wrap=True)

KINDS = ("models", "attacks", "defenses", "datasets", "presets", "papers", "tables", "figures", "trainings", "volumetric")


def volumetric_rows() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Parameter increase of each torchvision net's 3-D counterpart (BMVC 2023 Sec. 4.2) for depth
    kernels 2, 3 (the default), 4, beside the paper's; 16x16 patches, 3 channels, 1000 classes."""
    from patchbench.models.volumetric import PAPER_PARAMETER_INCREASE, TORCHVISION_ARCHS, parameter_increase  # reason: deferred: `patchbench --help` imports no torch

    rows = []
    for arch in TORCHVISION_ARCHS:
        counts = {d: parameter_increase(arch, d, (16, 16), 3, 1000) for d in (2, 3, 4)}
        rows.append((arch, f"{counts[3][0]:,}", *(f"+{counts[d][2]:,}" for d in (2, 3, 4)), f"+{PAPER_PARAMETER_INCREASE[arch]:,}"))
    return ("model", "2-D parameters", "ours, depth 2", "ours, depth 3 (default)", "ours, depth 4", "paper (Sec. 4.2)"), rows


def catalog(what: str) -> Table:
    """The registry ``what`` (one of :data:`KINDS`) as a table."""
    from patchbench.attacks import ATTACKS  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.presets import load_preset, preset_names  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.data import DATASETS  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.defenses import DEFENSES  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.models import MODELS  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.papers import PAPERS  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.reporting.lookup import all_tables  # reason: deferred: `patchbench --help` imports no torch
    from patchbench.training.objectives import objective_names  # reason: deferred: `patchbench --help` imports no torch

    def doc(obj) -> str:
        return (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""

    rows = {
        "models": (("model", "weights", "description"), [
            (n, "torchvision ImageNet" if s.pretrained else "trained by patchbench", s.description) for n, s in MODELS.items()]),
        "attacks": (("attack", "description"), [(n, doc(sys.modules[c.__module__])) for n, c in ATTACKS.items()]),
        "defenses": (("defense", "gradient", "parameters", "description"), [
            (n, c.gradient, ", ".join(c.param_names()), doc(c)) for n, c in DEFENSES.items()]),
        "datasets": (("dataset", "channels", "classes", "splits"), [
            (n, str(i.channels), str(i.num_classes), ", ".join(i.splits)) for n, i in DATASETS.items()]),
        "presets": (("preset", "paper", "experiment", "tables", "description"), [
            (n, p.paper, p.experiment, ", ".join(p.tables), p.description) for n, p in ((n, load_preset(n)) for n in preset_names())]),
        "papers": (("paper", "title", "demo presets", "paper presets"), [
            (n, p.title, ", ".join(p.presets.get("demo", ())), ", ".join(p.presets.get("paper", ()))) for n, p in PAPERS.items()]),
        "tables": (("table", "paper", "title"), [(n, t.paper, t.title) for n, t in all_tables().items()]),
        "figures": (("figure", "paper", "title"), [(f.name, p.name, f.title) for p in PAPERS.values() for f in p.figures.values()]),
        "trainings": (("objective",), [(n,) for n in objective_names()]),
    }
    if what not in rows and what != "volumetric":
        raise PatchbenchError(f"unknown list {what!r}; use {', '.join(KINDS)}")
    header, body = volumetric_rows() if what == "volumetric" else rows[what]
    t = Table(show_header=True)
    for h in header:
        t.add_column(h)
    for r in body:
        t.add_row(*r)
    return t


def list_cmd(what: opt.ListWhat):
    """List what is registered."""
    Console(width=max(out.width, 160)).print(catalog(what))  # wide tables stay whole when piped
