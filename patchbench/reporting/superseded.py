"""Cells a preset no longer produces: its defenses' cells computed with other parameters than the
preset's current ones (an older patchbench's defaults, an edited preset, a ``sweep --param`` run).

A results directory keeps every cell ever computed, so after such a change it holds a defense's cells
under two parameter sets at the same grid positions, and a table that pooled them would average two
defenses and double its n. The tables keep the preset's current set and say what they left out.
"""

from __future__ import annotations

import json

import pandas as pd

from patchbench.evaluation.defense_params import defense_params
from patchbench.defenses import build_defense
from patchbench.errors import PatchbenchError
from patchbench.models.wrapper import Normalizer
from patchbench.presets import load_preset


def current_params(preset_name: str) -> dict[str, str]:
    """Defense name → the ``defense_params`` JSON its cells carry under the preset as it is now; {} for a
    preset that is not shipped (a YAML file elsewhere: nothing to compare with)."""
    try:
        preset = load_preset(preset_name)
        norm = Normalizer.for_dataset(preset.data.dataset)  # what a defense in normalized space needs, as `defend` does
    except (PatchbenchError, KeyError):
        return {}
    out = {}
    for d in preset.defenses:
        try:
            out[d.name] = json.dumps(build_defense(d.name, defense_params(preset, d.name)[0], norm).params(), sort_keys=True)
        except PatchbenchError:  # a defense that needs more than the normalization to be built: not compared
            continue
    return out


def _changes(old: str, new: str) -> str:
    a, b = json.loads(old), json.loads(new)
    return ", ".join(f"{k} {a.get(k, '-')} → {b.get(k, '-')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def drop_superseded(cells: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """``cells`` without the superseded ones, and per preset a note for each defense × parameter set left out.

    Only a preset's grid defenses are compared, and only their ordinary cells: an adaptive attack's cells
    (``attack_through``) and a certifying defense's (``n_certified``) carry parameters of their own
    section. Where none of a defense's cells has the current parameters, all are kept (nothing newer to
    prefer)."""
    if cells.empty or "defense_params" not in cells:
        return cells, {}
    ordinary = pd.Series(True, index=cells.index)
    for col in ("attack_through", "n_certified"):
        if col in cells:
            ordinary &= cells[col].isna()
    drop = pd.Series(False, index=cells.index)
    notes: dict[str, list[str]] = {}
    for preset_name in cells["preset"].dropna().unique():
        for defense, now in current_params(preset_name).items():
            mine = ordinary & (cells["preset"] == preset_name) & (cells["defense"] == defense)
            stale = mine & (cells["defense_params"] != now)
            if not (mine & ~stale).any() or not stale.any():
                continue
            drop |= stale
            for old, k in cells.loc[stale, "defense_params"].value_counts().items():
                notes.setdefault(preset_name, []).append(f"Left out: {k} {defense} cell{'s' * (k != 1)} of {preset_name} computed with other "
                             f"parameters than the preset's ({_changes(old, now)}).")
    return cells[~drop], notes
