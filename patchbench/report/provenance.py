"""Where the report's numbers come from: the report's own header (when, which commit, which torch)
and, per paper, the runs ``patchbench reproduce`` recorded in ``<out>/provenance.json``::

    {"papers": {"<paper>": {"runs": [{"started": ..., "wall_s": ..., "new_cells": ..., "git_sha": ...,
                                      "torch": ..., "device": ..., "cpu": ..., "scale": ...,
                                      "presets": {"<preset>": "<config hash>"}}, ...]}}}

runs oldest first. Shown: the latest run (date, git SHA, torch, device, CPU, config hashes), its
wall time and the wall time of the first run that computed new cells (the run from empty).
"""

from __future__ import annotations

import json
from pathlib import Path

from patchbench.results import git_sha, now_utc

NO_PROVENANCE = "no provenance recorded (run `patchbench reproduce`)"


def duration(seconds) -> str:
    """``812.3`` -> ``812 s (13.5 min)``; unknown -> ``unknown``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds:.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def header(results, scale: str) -> list[tuple[str, str]]:
    """The report's own provenance: generation time, git SHA of this checkout, torch version."""
    import torch

    return [("scale", scale), ("generated", now_utc()), ("git SHA", git_sha()), ("torch", torch.__version__),
            ("results", str(results))]


def _runs(out: Path, paper: str, scale: str) -> tuple[list[dict], str]:
    path = Path(out) / "provenance.json"
    if not path.is_file():
        return [], NO_PROVENANCE
    try:
        data = json.loads(path.read_text())
        runs = data["papers"][paper]["runs"] if paper in data.get("papers", {}) else []
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [], f"{path.name} could not be read ({type(exc).__name__}: {exc}); {NO_PROVENANCE}"
    if not isinstance(runs, list):
        return [], f"{path.name}: runs of {paper} are not a list; {NO_PROVENANCE}"
    runs = [r for r in runs if isinstance(r, dict) and r.get("scale") in (None, scale)]
    return runs, "" if runs else NO_PROVENANCE


def paper_provenance(out: Path, paper: str, scale: str) -> tuple[list[tuple[str, str]], str]:
    """(label, value) rows of ``paper``'s provenance at ``scale``, or no rows and the line saying why."""
    runs, why = _runs(out, paper, scale)
    if not runs:
        return [], why
    last = runs[-1]
    first = next((r for r in runs if (r.get("new_cells") or 0) > 0), None)
    rows = [("latest run", str(last.get("started", "unknown"))),
            ("wall time, latest run", f"{duration(last.get('wall_s'))}, {last.get('new_cells', 'unknown')} new cells"),
            ("wall time from empty", f"{duration(first.get('wall_s'))}, {first.get('new_cells')} new cells "
                                     f"(run of {first.get('started', 'unknown')})" if first else "no run computed new cells"),
            ("runs recorded", str(len(runs))),
            ("git SHA", str(last.get("git_sha") or "unknown")), ("torch", str(last.get("torch", "unknown"))),
            ("device", str(last.get("device", "unknown"))), ("CPU", str(last.get("cpu", "unknown")))]
    presets = last.get("presets") if isinstance(last.get("presets"), dict) else {}
    rows += [(f"config hash {name}", str(h)) for name, h in presets.items()]
    return rows, ""
