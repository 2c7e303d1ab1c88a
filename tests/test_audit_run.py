"""The per-cell audit of a patch grid (patchbench.audit.verdicts / .runner): the verdicts on
synthetic cells whose answer is known, the stochastic-trace indicators on a real LaVAN run (a broken
attack, step size 0, is flagged; a working one is not), the stored verdicts joined to the cells, the
tables' daggers on exactly the flagged cells, and the `patchbench audit` command."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import torch
import torch.nn as nn

from conftest import demo_group, needs_fmnist, run_cli
from patchbench.attacks import LaVAN
from patchbench.attacks.patch import Patch, Placement
from patchbench.audit import indicators
from patchbench.audit.indicators import (
    ADAPTIVE_CELL,
    AUDIT_ATTACK_FAILED,
    AUDIT_COLUMNS,
    AUDIT_INCOMPLETE_OPTIMIZATION,
    AUDIT_KIND,
    AUDIT_NON_MONOTONIC,
    AUDIT_REMEDY,
    AUDIT_SECONDS,
    AUDIT_SILENT_SUCCESS,
    AUDIT_TRANSFER_FAILURE,
    AUDIT_UNSTABLE_EXCESS,
    AUDIT_UNSTABLE_PREDICTIONS,
    AUDIT_VERSION_COLUMN,
    INDICATORS,
    TRANSFER,
)
from patchbench.sections.audit import audit_cells, remedies
from patchbench.audit.runs import cell_runs
from patchbench.cache.patch_cache import PatchCache
from patchbench.audit.traces import block_means, minibatch_incomplete_optimization, minibatch_silent_success
from patchbench.audit.verdicts import NOTES, cell_verdicts
from patchbench.defenses import DEFENSES
from patchbench.defenses.base import Defense
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
    """The stored-data verdicts of ``rows``, with ``metas``: patch id -> the meta of the one file with those pixels."""
    cells = pd.DataFrame(rows)
    files = [(Path(f"{pid}.pt"), {"content_id": pid, **m}) for pid, m in (metas or {}).items()]
    return cell_verdicts(cells, cell_runs(cells, files))


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
@demo_group("icaart2022")
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
@demo_group("icaart2022")
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


# ---- issue 33 item 5: traces by run, unstable predictions on the attack's outcome, remedies by kind ----


def flat(steps: int = 200) -> list[float]:
    """A loss that never moved (step size 0, or a zero gradient): incomplete optimisation fires."""
    return [1.0] * steps


def converged(steps: int = 200) -> list[float]:
    """A loss that fell and settled: no indicator."""
    return [5 * math.exp(-t / 10) for t in range(steps)]


def save_patch(store: ResultStore, stem: str, pixels: torch.Tensor, **meta) -> str:
    """A patch file under the store's artifacts, as the caches save one; returns its content id."""
    p = Patch(pixels, torch.ones(1, *pixels.shape[-2:]), {"attack": "lavan", "size_px": pixels.shape[-1], "seed": 0,
                                                          "placement": "top-left", "margin": 5, "model_id": "m", **meta})
    p.save(store.artifacts / "patches" / stem)
    return p.content_id()


def test_runs_from_the_same_seeded_patch_do_not_share_a_trace(tmp_path):
    """Two adaptive runs of one seed start from the same patch (one content id at step 0); run A never
    moved (its last snapshot is still that patch, its trace flat), run B did. Found by pixels, A's flat
    trace flagged B's step-0 cells; found by run, only A's returned patch is judged by it."""
    store = ResultStore(tmp_path).ensure()
    start = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0))
    moved = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(1))
    run = {"attack": "lavan-adaptive"}
    a0 = save_patch(store, "adaptive/z/step00000", start, step=0, run_hash="aaa", **run)
    a_last = save_patch(store, "adaptive/z/step00100", start, step=100, run_hash="aaa", loss_trace=flat(),
                        hit_trace=[0.0] * 200, batch_size=32, train_success_rate=0.0, **run)
    b0 = save_patch(store, "adaptive/b/step00000", start, step=0, run_hash="bbb", **run)
    b_last = save_patch(store, "adaptive/b/step00100", moved, step=100, run_hash="bbb", loss_trace=converged(),
                        hit_trace=[0.9] * 200, batch_size=32, train_success_rate=0.9, **run)
    assert a0 == a_last == b0 != b_last  # the shared starting patch

    def snapshot(pid, defense, rh, step, acc):
        return {**cell(acc, defense, 2.3, patch=pid, attack="lavan-adaptive", through=defense, step=step),
                "attack_params": json.dumps({"run_hash": rh, "step": step}), "placement": "top-left+5"}

    cells = [snapshot(a0, "lgs", "aaa", 0, 0.9), snapshot(a_last, "lgs", "aaa", 100, 0.9),
             snapshot(b0, "slgs", "bbb", 0, 0.9), snapshot(b_last, "slgs", "bbb", 100, 0.2)]
    frame = pd.DataFrame(cells)
    runs = cell_runs(frame, PatchCache(store.root).entries())
    assert runs[cells[1]["run_id"]]["run_hash"] == "aaa" and runs[cells[3]["run_id"]]["run_hash"] == "bbb"
    v = cell_verdicts(frame, runs)
    io = v[AUDIT_INCOMPLETE_OPTIMIZATION]
    assert io[cells[1]["run_id"]] == True and io[cells[3]["run_id"]] == False  # noqa: E712 (nullable bools)
    assert pd.isna(io[cells[0]["run_id"]]) and pd.isna(io[cells[2]["run_id"]])  # step 0: not the run's result
    # what the lookup by pixels did (the last file with the cell's content id, in path order: run A's
    # last snapshot): B's step-0 cell judged by A's flat trace
    last_file = {m["content_id"]: m for _, m in PatchCache(store.root).entries()}
    by_pixels = {c["run_id"]: last_file[c["patch_id"]] for c in cells}
    assert cell_verdicts(frame, by_pixels)[AUDIT_INCOMPLETE_OPTIMIZATION][cells[2]["run_id"]] == True  # noqa: E712


def test_a_cell_whose_run_cannot_be_told_is_not_judged_by_a_borrowed_trace():
    """Two plain runs ending on the same pixels (e.g. both with step size 0) but with different traces:
    the cell is one, its run two; the traces are not read rather than one picked."""
    meta = {"attack": "lavan", "size_px": 10, "seed": 0, "model_id": "m"}
    files = [(Path("a.pt"), {"content_id": "same", **meta, "lr": 0.0, "loss_trace": flat()}),
             (Path("b.pt"), {"content_id": "same", **meta, "lr": 0.1, "loss_trace": converged()})]
    c = cell(0.5, patch="same")
    assert cell_runs(pd.DataFrame([c]), files) == {c["run_id"]: None}
    assert cell_runs(pd.DataFrame([c]), files[:1])[c["run_id"]]["lr"] == 0.0
    other_seed = {**c, "attack_seed": 3}  # the meta records seed 0: not this cell's run
    assert cell_runs(pd.DataFrame([other_seed]), files[:1]) == {c["run_id"]: None}


def test_an_adaptive_cell_gets_a_remedy_that_does_not_tell_it_to_run_itself():
    """An adaptive cell that lost to the transferred patches already followed the declared gradient:
    its remedy is BPDA / EOT in place of that gradient; a transferred patch's cell is told to run the
    adaptive attack."""
    und = [cell(0.45, patch=f"s{s}", seed=s) for s in range(3)]
    plain = [cell(0.80, "lgs", 2.3, patch=f"s{s}", seed=s) for s in range(3)]
    weak = [cell(a, "lgs", 2.3, patch=f"w{k}", attack="lavan-adaptive", through="lgs", step=k) for k, a in ((0, 0.95), (100, 0.93))]
    cells = pd.DataFrame([*und, *plain, *weak])
    out = cell_verdicts(cells, {})
    remedies(out, cells)
    adaptive, transferred = weak[-1]["run_id"], plain[0]["run_id"]
    assert out.loc[adaptive, AUDIT_TRANSFER_FAILURE] and out.loc[adaptive, AUDIT_KIND] == ADAPTIVE_CELL
    assert "BPDA" in out.loc[adaptive, AUDIT_REMEDY] and "declared gradient, so that gradient is wrong" in out.loc[adaptive, AUDIT_REMEDY]
    assert "an adaptive attack" not in out.loc[adaptive, AUDIT_REMEDY]
    assert out.loc[transferred, AUDIT_KIND] == TRANSFER
    assert out.loc[transferred, AUDIT_REMEDY] == INDICATORS["transfer_failure"].run_instead  # run the adaptive attack
    assert out.loc[und[0]["run_id"], AUDIT_REMEDY] == ""  # nothing fires


# ---- the audit on a store: unstable predictions and incremental reruns -------------------------------


SIZE = 16
IMAGES = torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
LABELS = torch.zeros(8, dtype=torch.long)


def classifier() -> nn.Module:
    """Conv 3→4 (stride 4) + linear 64→3 with class 0's logit raised: the 8 images, all labelled 0,
    have margins away from 0, so Pintor's v is well conditioned (test_audit_indicators.py's net)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[0].weight *= 3
        model[0].bias *= 3
        model[3].bias[0] += 1.0
    return model.eval()


@dataclasses.dataclass
class Noisy(Defense):
    """A randomised defense: fresh Gaussian noise on every call (registered for a test only)."""

    name: ClassVar[str] = "noisy-test"
    uses_lambda: ClassVar[bool] = False
    std: float = 1.0

    def maps(self, x, model=None):
        return {"out": (x + self.std * torch.randn_like(x)).clamp(0, 1)}


def stored(store: ResultStore, acc: float, defense: str, patch: str, params: str = "{}", **kw) -> dict:
    """``cell`` as the store holds one (with its predictions), written to ``store``."""
    row = {**cell(acc, defense, patch=patch, **kw), "placement": "top-left+5", "defense_params": params,
           "attack_params": None, "created": "2024-01-01T00:00:00+00:00", "target": None}
    # the columns every stored cell holds (a cell file without them is not read: patchbench.store.columns.REQUIRED)
    row = {"dataset": "synthetic", "split": "test", "eval_n": 8, "model": "m", "correct": round(acc * 8), **row}
    pd.DataFrame([row]).to_parquet(store.cells_dir / f"{row['run_id']}.parquet")
    pd.DataFrame({"index": range(8), "label": 0, "pred": 0}).to_parquet(store.pred_dir / f"{row['run_id']}.parquet")
    return row


def audit(store: ResultStore, probes: int = 10, **kw) -> pd.DataFrame:
    cells = store.load_cells()
    return audit_cells(cells, store, "p", classifier(), "m", lambda idx: (IMAGES[idx], LABELS[idx]), n=8, probes=probes, **kw)


@pytest.fixture
def noisy_registered(monkeypatch):
    monkeypatch.setitem(DEFENSES, Noisy.name, Noisy)
    torch.manual_seed(0)  # the defense's own noise


def test_a_noisy_defense_the_attack_beats_is_not_flagged_one_that_stops_it_is(tmp_path, noisy_registered):
    store = ResultStore(tmp_path).ensure()
    a = save_patch(store, "a", torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2)))
    b = save_patch(store, "b", torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(3)), seed=1)
    stored(store, 0.10, "none", a), stored(store, 0.10, "none", b, seed=1)
    beaten = stored(store, 0.12, "noisy-test", a)  # the patch still works through the noise
    stopped = stored(store, 0.80, "noisy-test", b, seed=1)  # the defense restored 70 pp
    plain = stored(store, 0.80, "gaussian", a, params='{"sigma": 0.0}')  # deterministic, no added instability
    v = audit(store).set_index("run_id")
    assert v.loc[beaten["run_id"], AUDIT_UNSTABLE_EXCESS] > 0.1  # as unstable as the other...
    assert v.loc[beaten["run_id"], AUDIT_ATTACK_FAILED] == False  # noqa: E712  ...but the attack worked
    assert v.loc[beaten["run_id"], AUDIT_UNSTABLE_PREDICTIONS] == False  # noqa: E712
    assert v.loc[stopped["run_id"], AUDIT_UNSTABLE_EXCESS] > 0.1 and v.loc[stopped["run_id"], AUDIT_ATTACK_FAILED]
    assert v.loc[stopped["run_id"], AUDIT_UNSTABLE_PREDICTIONS] == True  # noqa: E712
    assert "the attack failed (80.0 % vs 10.0 %" in v.loc[stopped["run_id"], NOTES]
    assert v.loc[stopped["run_id"], AUDIT_REMEDY] == INDICATORS["unstable_predictions"].run_instead + "; " + \
        INDICATORS["transfer_failure"].run_instead
    # Gaussian with σ = 0 is the identity: the same v as the undefended pipeline, excess 0 whatever v is
    assert v.loc[plain["run_id"], AUDIT_UNSTABLE_EXCESS] == 0 and not v.loc[plain["run_id"], AUDIT_UNSTABLE_PREDICTIONS]


def test_a_rerun_probes_only_new_or_changed_cells_and_a_new_audit_version_all(tmp_path, monkeypatch):
    store = ResultStore(tmp_path).ensure()
    audit = functools.partial(globals()["audit"], probes=2)
    a = save_patch(store, "a", torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2)))
    rows = [stored(store, 0.10, "none", a), stored(store, 0.50, "gaussian", a), stored(store, 0.60, "median", a)]
    first = audit(store)
    assert first.attrs["probed"] == 3 and (first[AUDIT_VERSION_COLUMN] == indicators.AUDIT_VERSION).all()
    path = store.root / "audit" / "cells" / "p.parquet"
    written = path.stat().st_mtime_ns
    again = audit(store)
    assert again.attrs["probed"] == 0 and path.stat().st_mtime_ns == written  # nothing probed, nothing written
    pd.testing.assert_frame_equal(again.drop(columns=AUDIT_SECONDS), first.drop(columns=AUDIT_SECONDS), check_dtype=False)
    # a changed cell (recomputed under the same run id): that cell only
    changed = {**rows[1], "created": "2024-02-01T00:00:00+00:00", "accuracy": 0.55}
    pd.DataFrame([changed]).to_parquet(store.cells_dir / f"{changed['run_id']}.parquet")
    assert audit(store).attrs["probed"] == 1
    # a new cell: that cell only; the rows of the others stay in the file
    new = stored(store, 0.70, "gaussian", a, params='{"sigma": 2.0}')
    out = audit(store)
    assert out.attrs["probed"] == 1 and set(store.load_audit("p")["run_id"]) == {r["run_id"] for r in [*rows, new]}
    assert audit(store).attrs["probed"] == 0
    # the audit's logic changed: every cell once, then none
    monkeypatch.setattr(indicators, "AUDIT_VERSION", indicators.AUDIT_VERSION + 1)
    assert audit(store).attrs["probed"] == 4 and audit(store).attrs["probed"] == 0
    assert (store.load_audit("p")[AUDIT_VERSION_COLUMN] == indicators.AUDIT_VERSION).all()
    assert audit(store, rerun=True).attrs["probed"] == 4  # `patchbench audit P --rerun`


def test_the_audit_of_an_older_version_is_replaced_not_mixed(tmp_path):
    """Rows written before the audit had a version (no audit_version column) are re-audited, and
    load_audit keeps the newest version's row of a run id."""
    store = ResultStore(tmp_path).ensure()
    a = save_patch(store, "a", torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2)))
    rows = [stored(store, 0.10, "none", a), stored(store, 0.50, "gaussian", a)]
    store.write_audit("p", verdicts(rows).reset_index())  # a version-1 file
    assert AUDIT_VERSION_COLUMN not in store.load_audit("p")
    assert audit(store).attrs["probed"] == 2
    store.write_audit("old", verdicts(rows).reset_index())  # an older row of the same cells in another file
    loaded = store.load_audit()
    assert len(loaded) == 2 and (loaded[AUDIT_VERSION_COLUMN] == indicators.AUDIT_VERSION).all()


def test_a_table_legend_gives_the_remedy_of_the_kind_of_cell_flagged():
    adaptive = pd.DataFrame([{AUDIT_TRANSFER_FAILURE: True, "defense": "lgs", "attack_through": "lgs"}])
    transferred = pd.DataFrame([{AUDIT_TRANSFER_FAILURE: True, "defense": "lgs", "attack_through": None}])
    assert "BPDA" in audit_legend(adaptive, "p")[0] and "an adaptive attack" not in audit_legend(adaptive, "p")[0]
    assert audit_legend(transferred, "p")[0].endswith(f"Run instead: {INDICATORS['transfer_failure'].run_instead}.")
    both = audit_legend(pd.concat([adaptive, transferred]), "p")[0]
    assert "adaptive cells: the adaptive attack already followed" in both and "transfer cells: an adaptive attack" in both
