"""Where a reproduction's numbers came from: ``<out>/provenance.json``, one entry per ``reproduce``
run and paper (git SHA, config hashes, torch, device, CPU, date, wall time, cells computed).

The report (:mod:`patchbench.report`) prints it beside the tables. Runs are kept oldest first
(the last :data:`KEEP` of them), so the wall time of the run that computed the cells survives the
fast reruns that only reuse them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from patchbench.config import Preset
from patchbench.devices import cpu_name
from patchbench.results import git_sha
from patchbench.util import atomic_write, stable_hash

FILE = "provenance.json"
KEEP = 20


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def config_hash(preset: Preset) -> str:
    """A preset's whole configuration, hashed (what a reader compares between two reports)."""
    return stable_hash(preset.to_dict())


def record(out: Path, paper: str, scale: str, presets: list[Preset], device: torch.device,
           started: datetime, wall_s: float, new_cells: int, stages: dict[str, float] | None = None) -> Path:
    """Append this run of ``paper`` to ``out/provenance.json`` (with its seconds per stage, :mod:`patchbench.stages`)."""
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
