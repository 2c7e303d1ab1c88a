"""Where a reproduction's numbers came from, written and read by one module: ``patchbench reproduce``
appends each run (:func:`record`); the report shows them (:func:`paper_provenance`) with its own
header. The report's numbers come from: the report's own header (when, which commit, which torch)
and, per paper, the runs ``patchbench reproduce`` recorded in ``<out>/provenance.json``::

    {"papers": {"<paper>": {"runs": [{"started": ..., "wall_s": ..., "new_cells": ..., "git_sha": ...,
                                      "torch": ..., "device": ..., "cpu": ..., "scale": ...,
                                      "presets": {"<preset>": "<config hash>"}}, ...]}}}

Shown: the latest run (date, git SHA, torch, device, CPU, config hashes), its
wall time and the wall time of the first run that computed new cells (the run from empty). Runs are
kept oldest first (the last :data:`KEEP` of them), so the wall time of the run that computed the cells
survives the fast reruns that only reuse them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from patchbench.config import Preset
from patchbench.config.keys import config_hash
from patchbench.devices import cpu_name
from patchbench.store.results import git_sha, now_utc
from patchbench.util import atomic_write

FILE = "provenance.json"
KEEP = 20


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def record(out: Path, paper: str, scale: str, presets: list[Preset], device: torch.device,
           started: datetime, wall_s: float, new_cells: int, stages: dict[str, float] | None = None) -> Path:
    """Append this run of ``paper`` to ``out/provenance.json`` (with its seconds per stage, :mod:`patchbench.evaluation.stages`)."""
    path = Path(out) / FILE
    data = read(path)
    runs = data.setdefault("papers", {}).setdefault(paper, {}).setdefault("runs", [])
    runs.append({
        "started": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 1),
        "new_cells": int(new_cells),
        "git_sha": git_sha(),
        "torch": torch.__version__,
        "device": device_name(device),
        "cpu": cpu_name(),
        "scale": scale,
        "presets": {p.name: config_hash(p) for p in presets},
        **({"stages_s": stages} if stages else {}),
    })
    del runs[:-KEEP]
    return atomic_write(path, json.dumps(data, indent=1) + "\n")


def read(path: Path) -> dict:
    """The provenance file's content, empty when there is none (or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def now() -> datetime:
    return datetime.now(timezone.utc)





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
