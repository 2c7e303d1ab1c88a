"""A table keeps a preset's current defense parameters: cells computed under older ones (an older
patchbench's defaults, an edited preset) are left out with a note instead of being pooled."""

from __future__ import annotations

import json

import pandas as pd

from patchbench.reporting import lookup
from patchbench.reporting.superseded import current_params, drop_superseded
from patchbench.table import Table

PRESET = "demo-bmvc-fmnist"  # grid defenses lgs and dw


def cells_of(params_json: list[str], **extra) -> pd.DataFrame:
    return pd.DataFrame({"preset": PRESET, "defense": "dw", "defense_params": params_json, "accuracy": 0.5, **extra})


def older(now: str, **change) -> str:
    return json.dumps({**json.loads(now), **change}, sort_keys=True)


def test_the_preset_s_current_parameters_are_those_its_sweep_stores():
    now = json.loads(current_params(PRESET)["dw"])
    assert now["omega"] == "auto" and now["inpaint_tol"] == 1e-06  # the dataclass's defaults, filled in
    assert current_params("no-such-preset.yaml") == {}
    vgg = json.loads(current_params("icaart2022-vgg16")["lgs"])  # LGS in normalized space: built on the dataset's mean/std
    assert vgg["space"] == "normalized"


def test_cells_under_older_parameters_are_left_out_with_what_changed():
    now = current_params(PRESET)["dw"]
    stale = older(now, omega=1.9)
    kept, notes = drop_superseded(cells_of([now, now, stale, stale, stale]))
    assert list(kept["defense_params"]) == [now, now]
    assert notes[PRESET] == [f"Left out: 3 dw cells of {PRESET} computed with other parameters than the preset's (omega 1.9 → auto)."]


def test_without_a_current_cell_and_outside_the_grid_nothing_is_dropped():
    now = current_params(PRESET)["dw"]
    only_old = cells_of([older(now, omega=1.9)] * 2)  # a `sweep --param` run alone: nothing newer to prefer
    adaptive = cells_of([now, older(now, omega=1.5)], attack_through=[None, "dw"])  # an adaptive section's own params
    certified = cells_of([now, older(now, omega=1.5)], n_certified=[None, 7])
    other = pd.DataFrame({"preset": "no-such-preset.yaml", "defense": "dw", "defense_params": ["{}", "{\"a\": 1}"]})
    for frame in (only_old, adaptive, certified, other):
        kept, notes = drop_superseded(frame)
        assert len(kept) == len(frame) and notes == {}


def test_build_table_builds_from_the_current_cells_and_prints_the_note(monkeypatch):
    seen = {}

    def build(table, cells, ctx):
        seen["cells"] = cells
        return pd.DataFrame({"n": [len(cells)]}), "caption"

    fake = Table("fake-table", "bmvc2023", "fake", build, (), PRESET)
    monkeypatch.setattr(lookup, "all_tables", lambda: {"fake-table": fake})
    now = current_params(PRESET)["dw"]
    table, _ = lookup.build_table("fake-table", cells_of([now, older(now, inpaint_tol=0.0)]), PRESET)
    assert list(seen["cells"]["defense_params"]) == [now]
    assert table.attrs["warnings"] == [f"Left out: 1 dw cell of {PRESET} computed with other parameters than the "
                                       "preset's (inpaint_tol 0.0 → 1e-06)."]
