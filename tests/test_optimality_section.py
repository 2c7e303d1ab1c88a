"""The patch-optimality section: its table and audit verdicts from stored per-image predictions with
known answers (a synthetic results directory), and the section end to end on a tiny preset."""

import numpy as np
import pandas as pd
import pytest
import torch

from patchbench.store.results import ResultStore, wilson_ci
from patchbench.sections.optimality_cells import evaluate_targets, read_manifest, write_manifest, write_verdicts
from patchbench.sections.optimality_table import build_optimality
from patchbench.table import TableContext

from conftest import needs_fmnist, tiny_preset

REPEAT = 100  # every synthetic image 100 times: the optimality is the same, the intervals narrow


class Cfg:  # the section's config as a table builder sees it
    presets: list = []


def _cell(store, rid, attack, px, correct, labels, target=None):
    pred = np.where(correct, labels, (labels + 1) % 10)
    n, k = len(labels), int(correct.sum())
    lo, hi = wilson_ci(k, n)
    row = {"run_id": rid, "preset": "syn", "model": "m", "model_id": "mid", "image_size": 8, "dataset": "d",
           "defense": "none", "lam": None, "attack": attack, "patch_px": px, "target": target,
           "condition": "clean" if attack == "none" else "attacked", "n": n, "correct": k, "accuracy": k / n,
           "ci_low": lo, "ci_high": hi, "created": "2026-12-06T00:00:00+00:00"}
    store.write(row, pd.DataFrame({"index": np.arange(n), "label": labels, "pred": pred}))
    return row


def synthetic_store(root, targets=None):
    """4 images (×100), image side 8, patch sides 2/3/4 (areas 4, 9, 16 /64) and the half-image 5 px.
    Image 3 is misclassified clean. LaVAN first fools image 0 at 2 px, image 1 at 4 px, never image 2
    (not even at 5 px); Patch-RS fools images 0 and 1 at 3 px and image 2 at 4 px."""
    store = ResultStore(root).ensure()
    labels = np.tile(np.arange(4), REPEAT)
    img = np.tile(np.arange(4), REPEAT)
    ok = lambda *good: np.isin(img, good)  # noqa: E731 (the images classified correctly)
    rows = [_cell(store, "clean", "none", None, ok(0, 1, 2), labels)]
    fooled = {"lavan": {2: ok(1, 2), 3: ok(1, 2), 4: ok(2), 5: ok(2)},
              "patch_rs": {2: ok(0, 1, 2), 3: ok(2), 4: ok(), 5: ok()}}
    for attack, by_px in fooled.items():
        rows += [_cell(store, f"{attack}{px}", attack, px, correct, labels, (targets or {}).get(attack))
                 for px, correct in by_px.items()]
    return store, pd.DataFrame(rows)


def test_table_and_verdicts_from_stored_predictions_with_known_answers(tmp_path):
    """Areas (/64) 4, 9, 16; LaVAN's distances [4, 16, inf, 0], Patch-RS's [9, 9, 16, 0], A* [4, 9, 16, 0].
    Curves at 0/4/9/16: LaVAN .75 .5 .5 .25 (area 7.625), Patch-RS .75 .75 .25 0 (6.375), A* .75 .5 .25 0
    (5.25); ρ·16 − A* = 6.75: LaVAN 1 − 2.375/6.75 = 35/54, Patch-RS 1 − 1.125/6.75 = 5/6."""
    store, rows = synthetic_store(tmp_path / "res")
    write_manifest(store, "syn", rows, sizes=[2, 3, 4], half=5)
    manifest = read_manifest(store.root, "syn")
    assert sorted(manifest["role"]) == ["clean"] + ["curve"] * 6 + ["unbounded"] * 2
    (t,) = evaluate_targets(store.root, manifest)
    assert t.scores.optimality == pytest.approx({"lavan": 35 / 54, "patch_rs": 5 / 6})
    assert t.scores.best_area * 64 == pytest.approx(5.25)
    assert t.unconstrained == {"lavan": True, "patch_rs": False}  # LaVAN never reaches image 2: 1/3 of the correct
    assert t.best_at_largest == pytest.approx(0.0)

    cells = store.load_cells()
    cfg = Cfg()
    table, caption = build_optimality(None, cells, TableContext("syn", {"patch-optimality": cfg}, lambda n: None))
    assert list(table["LaVAN"]) == ["0.65 (2) †UF", "0.65 (2)"]
    assert list(table["Patch-RS"]) == ["0.83 (1)", "0.83 (1)"]
    assert table["clean"].iloc[0] == "75.0" and table["Model"].iloc[-1] == "mean over 1"
    assert "2/3/4 px" in caption and any("unconstrained failure" in n for n in table.attrs["warnings"])

    out = write_verdicts("syn", store)
    merged = store.load_cells().set_index("run_id")
    assert merged.loc[["lavan2", "lavan3", "lavan4", "lavan5"], "audit_unconstrained_failure"].tolist() == [True] * 4
    assert not merged.loc[["patch_rs2", "patch_rs5"], "audit_unconstrained_failure"].any()
    # LaVAN .5 vs Patch-RS .75 at 2 px (no); .5 vs .25 at 3 px and .25 vs 0 at 4 px, beyond the intervals
    assert merged.loc[["lavan2", "lavan3", "lavan4"], "audit_random_beats_gradient"].tolist() == [False, True, True]
    assert "random search beats" in merged.loc["lavan3", "audit_notes"]
    assert len(out) == 8


def test_a_targeted_patch_is_not_blamed_for_images_of_its_target_class(tmp_path):
    """LaVAN targeting class 2 never attacks image 2 (its true class is the target): it reaches every
    image it attacks, no unconstrained failure; targeting class 3 (misclassified clean) it misses image 2."""
    for target, fires in ((2, False), (3, True)):
        store, rows = synthetic_store(tmp_path / f"res{target}", targets={"lavan": target, "patch_rs": target})
        write_manifest(store, "syn", rows, sizes=[2, 3, 4], half=5)
        (t,) = evaluate_targets(store.root, read_manifest(store.root, "syn"))
        assert t.unconstrained == {"lavan": fires, "patch_rs": False}
        assert t.scores.optimality == pytest.approx({"lavan": 35 / 54, "patch_rs": 5 / 6})  # the curves count every image


def test_section_verdicts_join_the_per_cell_audit(tmp_path):
    """The per-cell audit's file and the section's judge the same cells: per column the value that is
    stored, notes joined."""
    store, rows = synthetic_store(tmp_path / "res")
    store.write_audit("syn", pd.DataFrame({"run_id": ["lavan3"], "audit_transfer_failure": pd.array([True], "boolean"),
                                           "audit_unconstrained_failure": pd.array([pd.NA], "boolean"),
                                           "audit_notes": ["transfer failure: ..."]}))
    write_manifest(store, "syn", rows, sizes=[2, 3, 4], half=5)
    write_verdicts("syn", store)
    r = store.load_cells().set_index("run_id").loc["lavan3"]
    assert bool(r["audit_transfer_failure"]) and bool(r["audit_unconstrained_failure"])
    assert r["audit_notes"].startswith("unconstrained failure") and "transfer failure: ..." in r["audit_notes"]


@needs_fmnist
@pytest.mark.slow
def test_section_end_to_end_on_a_tiny_preset(tmp_path, monkeypatch, one_thread):
    """Every attack at every size and the half-image one, undefended and through LGS: the manifest names
    a stored cell for each; the table ranks the four attacks; a rerun trains and evaluates nothing."""
    from patchbench.attacks import LaVAN
    from patchbench.presets import load_preset
    from patchbench.sections.optimality import run_optimality_section, section_preset

    path = tiny_preset(tmp_path / "tiny.yaml", data__eval_n=100)
    raw = path.read_text() + ("adaptive: {defenses: [lgs], lam: 2.3, size: 8, steps: 3, record_every: 3}\n"
                              "patch-optimality: {sizes: [6, 8]}\n")
    path.write_text(raw.replace("steps: 15", "steps: 4"))
    preset = load_preset(str(path))
    store = ResultStore(tmp_path / "res")
    dev = torch.device("cpu")
    manifest = run_optimality_section(preset, store, dev, progress=False)
    assert set(manifest["attack"]) == {"none", "lavan", "patch_rs", "lavan-adaptive"}
    assert sorted(manifest.loc[manifest["attack"] == "lavan", "patch_px"].unique()) == [6, 8, 22]  # 22 px: half of 32 px
    assert len(manifest) == 2 + 3 * 2 + 3 * 2 + 3  # clean ×2, LaVAN and Patch-RS ×3 sizes ×2 defenses, adaptive ×3 (LGS)
    cells = store.load_cells()
    assert set(cells["preset"]) == {section_preset(preset.name)}  # cells the section added are marked as its
    assert cells["audit_unconstrained_failure"].notna().sum() == 3 * 2 + 3 * 2 + 3
    table, _ = build_optimality(None, cells, TableContext(preset.name, preset.extra, lambda n: None))
    assert list(table["Defense"]) == ["none", "LGS", ""]
    ranked = [int(v.split("(")[1].split(")")[0]) for v in table.iloc[-1][["LaVAN", "Patch-RS", "adaptive LaVAN"]]]
    assert sorted(ranked)[0] == 1 and all(1 <= r <= 3 for r in ranked)

    def no_work(*a, **k):
        raise AssertionError("a rerun must not train")

    monkeypatch.setattr(LaVAN, "fit", no_work)
    before = sorted(p.name for p in store.cells_dir.iterdir())
    again = run_optimality_section(preset, store, dev, progress=False)
    assert sorted(p.name for p in store.cells_dir.iterdir()) == before
    assert list(again["run_id"]) == list(manifest["run_id"])
