"""Wall time per stage of a run (models, patches, grid, adaptive, certified, audit, tables), so a
long command can end with where its time went (``reproduce`` prints it and records it in
provenance.json). Stages nest: time is booked to the outermost stage running, once."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

ORDER = ("models", "patches", "grid", "adaptive", "certified", "audit", "tables")
_times: dict[str, float] = {}
_active: list[str] = []


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Book the wall time of the block to ``name`` (unless an outer stage is running)."""
    outer = bool(_active)
    _active.append(name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _active.pop()
        if not outer:
            _times[name] = _times.get(name, 0.0) + time.perf_counter() - t0


def take() -> dict[str, float]:
    """The stages' seconds booked since the last call (in :data:`ORDER`, then any other), and reset."""
    out = {k: round(_times[k], 1) for k in [*ORDER, *sorted(set(_times) - set(ORDER))] if k in _times}
    _times.clear()
    return out


def summary(times: dict[str, float], total: float) -> str:
    """``models 95 s · patches 210 s · … · other 12 s (total 720 s)``."""
    other = total - sum(times.values())
    parts = [f"{k} {v:.0f} s" for k, v in times.items()] + ([f"other {other:.0f} s"] if other >= 0.5 else [])
    return " · ".join(parts) + f" (total {total:.0f} s)"
