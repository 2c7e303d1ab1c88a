"""The per-cell audit of a patch grid (patchbench.audit.verdicts / .runner): the verdicts on
synthetic cells whose answer is known, the stochastic-trace indicators on a real LaVAN run (a broken
attack, step size 0, is flagged; a working one is not), the stored verdicts joined to the cells, the
tables' daggers on exactly the flagged cells, and the `patchbench audit` command."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch
import torch.nn as nn

from conftest import needs_fmnist, run_cli
from patchbench.attacks import LaVAN
from patchbench.attacks.patch import Placement
from patchbench.audit.indicators import (
    AUDIT_COLUMNS,
    AUDIT_INCOMPLETE_OPTIMIZATION,
    AUDIT_NON_MONOTONIC,
    AUDIT_SILENT_SUCCESS,
    AUDIT_TRANSFER_FAILURE,
)
from patchbench.audit.traces import block_means, minibatch_incomplete_optimization, minibatch_silent_success
from patchbench.audit.verdicts import NOTES, cell_verdicts
from patchbench.store.columns import column_names
from patchbench.store.results import ResultStore, wilson_ci
from patchbench.table import audit_legend, audit_mark

N = 1000
_ids = itertools.count()


def cell(acc: float, defense: str = "none", lam=None, patch: str = "p0", px: int = 10, attack: str = "lavan",
         through=None, step=None, seed: int = 0, condition: str = "attacked") -> dict:
    lo, hi = wilson_ci(round(acc * N), N)
    return {"run_id": f"r{next(_ids)}", "preset": "p", "model_id": "m", "condition": condition, "attack": attack,
            "defense": defense, "lam": lam, "patch_id": patch, "patch_px": px, "attack_through": through,
            "attack_step": step, "attack_seed": seed, "accuracy": acc, "n": N, "ci_low": lo, "ci_high": hi}


def verdicts(rows: list[dict], metas: dict | None = None) -> pd.DataFrame:
    return cell_verdicts(pd.DataFrame(rows), metas or {})


# ---- verdicts from stored cells ----------------------------------------------------------------


def test_a_defense_that_restores_a_transferred_patch_is_flagged_and_the_undefended_cell_is_not():
    und, lgs, weak = cell(0.45), cell(0.80, "lgs", 2.3), cell(0.46, "lgs", 3.5)
    v = verdicts([und, lgs, weak])
    assert v.loc[lgs["run_id"], AUDIT_TRANSFER_FAILURE] == True  # noqa: E712 (a nullable bool: True, not missing)
    assert "transfer failure" in v.loc[lgs["run_id"], NOTES] and "80.0 %" in v.loc[lgs["run_id"], NOTES]
    assert not v.loc[weak["run_id"], AUDIT_TRANSFER_FAILURE]  # within the interval of the undefended cell
    assert pd.isna(v.loc[und["run_id"], AUDIT_TRANSFER_FAILURE])  # nothing to transfer to
    assert v.loc[und["run_id"], NOTES] == ""


def test_an_adaptive_attack_is_flagged_only_when_the_transferred_patches_beat_it():
    plain = [cell(0.80, "lgs", 2.3, patch=f"s{s}", seed=s) for s in range(3)]
    strong = [cell(a, "lgs", 2.3, patch=f"a{k}", attack="lavan-adaptive", through="lgs", step=k)
              for k, a in ((0, 0.95), (50, 0.60), (100, 0.40))]
    v = verdicts(plain + strong)
    assert not v.loc[strong[-1]["run_id"], AUDIT_TRANSFER_FAILURE]
    assert pd.isna(v.loc[strong[0]["run_id"], AUDIT_TRANSFER_FAILURE])  # a snapshot of the path, not a result
    weak = [cell(a, "lgs", 2.3, patch=f"b{k}", attack="lavan-adaptive", through="lgs", step=k)
            for k, a in ((0, 0.95), (100, 0.93))]
    v = verdicts(plain + weak)
    assert v.loc[weak[-1]["run_id"], AUDIT_TRANSFER_FAILURE]


def test_silent_success_along_the_adaptive_path():
    path = [cell(a, "wlgs", 2.3, patch=f"c{k}", attack="lavan-adaptive", through="wlgs", step=k)
            for k, a in ((0, 0.95), (50, 0.30), (100, 0.60))]
    v = verdicts(path)
    assert v.loc[path[-1]["run_id"], AUDIT_SILENT_SUCCESS] and "step 50" in v.loc[path[-1]["run_id"], NOTES]
    steady = [cell(a, "wlgs", 2.3, patch=f"d{k}", attack="lavan-adaptive", through="wlgs", step=k)
              for k, a in ((0, 0.95), (50, 0.60), (100, 0.59))]
    assert not verdicts(steady).loc[steady[-1]["run_id"], AUDIT_SILENT_SUCCESS]


def test_accuracy_rising_with_patch_size_is_flagged_on_the_larger_patch():
    small, mid, large = cell(0.40, px=6, patch="a"), cell(0.42, px=8, patch="b"), cell(0.70, px=10, patch="c")
    v = verdicts([small, mid, large])
    assert v.loc[large["run_id"], AUDIT_NON_MONOTONIC] and not v.loc[mid["run_id"], AUDIT_NON_MONOTONIC]
    assert pd.isna(v.loc[small["run_id"], AUDIT_NON_MONOTONIC])  # the smallest has nothing below it


def test_clean_cells_get_no_verdict():
    v = verdicts([cell(0.9, condition="clean", patch=None, px=None, attack="none"), cell(0.5)])
    assert len(v) == 1


# ---- the stochastic traces -----------------------------------------------------------------------


def tiny_lavan(lr: float, steps: int, seed: int = 0) -> dict:
    """LaVAN on a 16 px random conv net, targeting the class it predicts least (none of the images
    is of that class): a 6 px patch can reach it within a few dozen Adam steps."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        model[0].weight *= 4
        x = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 0.5
        z = model(x)
    target = int(z.mean(0).argmin())
    keep = z.argmax(1) != target
    x, y = x[keep][:256], z.argmax(1)[keep][:256]

    def batches():
        while True:
            for i in range(0, len(y) - 31, 32):
                yield x[i:i + 32], y[i:i + 32]

    attack = LaVAN(model, 6, target, Placement("top-left", 0), 16, steps=steps, lr=lr, optimizer="adam", progress=False)
    return attack.fit(batches(), channels=1).meta


def test_a_broken_attack_with_step_size_zero_is_flagged_as_incomplete_optimization():
    meta = tiny_lavan(lr=0.0, steps=200)
    trace = torch.tensor(meta["loss_trace"])
    assert torch.allclose(trace[8:], trace[:-8])  # the patch never moved: the 8 batches' losses repeat
    assert minibatch_incomplete_optimization(trace)


def test_a_working_attack_run_to_convergence_is_not_flagged():
    meta = tiny_lavan(lr=0.1, steps=400)
    trace, hits = torch.tensor(meta["loss_trace"]), torch.tensor(meta["hit_trace"])
    means, _ = block_means(trace)
    assert means[0] - means[-1] > 0.2  # it descended
    assert not minibatch_incomplete_optimization(trace)
    assert not minibatch_silent_success(hits, float(hits[-40:].mean()), 32)
    slow = torch.tensor(tiny_lavan(lr=0.005, steps=60)["loss_trace"])  # stopped while still falling
    assert minibatch_incomplete_optimization(slow)


def test_trace_verdicts_flag_every_cell_of_the_patch():
    meta = {"loss_trace": [5.0] * 50 + [0.0] * 50, "hit_trace": [0.9] * 50 + [0.1] * 50, "batch_size": 32,
            "train_success_rate": 0.1}
    cells = [cell(0.5, patch="t"), cell(0.7, "lgs", 2.3, patch="t")]
    v = verdicts(cells, {"t": meta})
    assert v[AUDIT_SILENT_SUCCESS].all() and not v[AUDIT_INCOMPLETE_OPTIMIZATION].any()


# ---- the store and the tables --------------------------------------------------------------------


def test_verdicts_are_joined_to_the_cells_they_judge(tmp_path):
    store = ResultStore(tmp_path)
    rows = [cell(0.45), cell(0.80, "lgs", 2.3)]
    for r in rows:
        # every declared column, as the store writes a cell (one lacking a required column is not read)
        pd.DataFrame([{c: r.get(c) for c in column_names()}]).to_parquet(store.ensure().cells_dir / f"{r['run_id']}.parquet")
    store.write_audit("p", verdicts(rows).reset_index())
    cells = store.load_cells().set_index("run_id")
    assert set(AUDIT_COLUMNS) <= set(cells.columns)
    assert bool(cells.loc[rows[1]["run_id"], AUDIT_TRANSFER_FAILURE]) and pd.isna(cells.loc[rows[0]["run_id"], AUDIT_TRANSFER_FAILURE])


def test_a_table_marks_a_number_whose_cells_fire_and_names_the_indicator():
    flagged = pd.DataFrame([{AUDIT_TRANSFER_FAILURE: True, AUDIT_SILENT_SUCCESS: False}, {AUDIT_TRANSFER_FAILURE: False}])
    clean = pd.DataFrame([{AUDIT_TRANSFER_FAILURE: False, AUDIT_SILENT_SUCCESS: False}])
    assert audit_mark(flagged) == " †TF" and audit_mark(clean) == ""
    legend = audit_legend(pd.concat([flagged, clean]), "p")
    assert legend[0].startswith("† TF = transfer failure (Pintor et al. 2022)") and "Run instead" in legend[0]
    assert "no indicator fires" in audit_legend(clean, "p")[0]
    assert "not run" in audit_legend(pd.DataFrame([{"accuracy": 0.5}]), "p")[0]


@needs_fmnist
@pytest.mark.slow
def test_reproduce_audits_the_icaart_demo_and_its_tables_dagger_exactly_the_flagged_cells(paper_demo):
    results, out = paper_demo("icaart2022")
    cells = ResultStore(results, read_only=True).load_cells()
    for preset in ("demo-fmnist", "demo-fmnist-inception"):
        att = cells[(cells["preset"] == preset) & (cells["condition"] == "attacked")]
        assert len(att) and att[AUDIT_TRANSFER_FAILURE].notna().any(), preset  # every preset audited by reproduce
        und = att[(att["defense"] == "none") & att["attack_through"].isna()]
        assert not und[AUDIT_TRANSFER_FAILURE].fillna(False).any()  # nothing to transfer to
    table = (out / "icaart2022-1.md").read_text()
    assert "Attack-failure audit" in table or "† " in table
    daggers = table.count("†") - table.count("_† ")  # marks in the rows, not the legend's lines
    mine = cells[(cells["preset"] == "demo-fmnist") & cells["attack"].isin(["lavan"]) & (cells["condition"] == "attacked")]
    mine = mine[(mine["defense"] == "none") | mine["lam"].notna()]  # Table 1's rows (the certified baseline has its own)
    flagged_numbers = sum(bool(audit_mark(g)) for _, g in mine.groupby(["defense", "lam", "patch_px"], dropna=False))
    assert daggers == flagged_numbers


@needs_fmnist
@pytest.mark.slow
def test_audit_command_explains_each_flagged_cell(paper_demo):
    results, _ = paper_demo("icaart2022")
    res = run_cli("audit", "demo-fmnist", "--results", results)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("demo-fmnist: ") and "attacked cells audited" in lines[0]
    flagged = int(lines[0].split(", ")[1].split()[0])
    assert len([ln for ln in lines[1:] if ln.startswith("  ")]) == flagged
    assert all("Run instead: " in ln for ln in lines[1:] if ln.startswith("  "))


def test_audit_command_without_audited_cells_is_one_error_line(tmp_path):
    res = run_cli("audit", "--results", tmp_path, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error: no audited cells")


def test_silent_success_is_not_read_from_a_patch_trained_at_random_places():
    meta = {"loss_trace": [5.0] * 50 + [0.0] * 50, "hit_trace": [0.9] * 50 + [0.1] * 50, "batch_size": 32,
            "train_success_rate": 0.1, "random_placement": True}
    v = verdicts([cell(0.5, patch="r")], {"r": meta})
    assert v[AUDIT_SILENT_SUCCESS].isna().all() and v[AUDIT_INCOMPLETE_OPTIMIZATION].notna().all()
