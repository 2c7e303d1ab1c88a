"""The AutoAttack cross-check (patchbench.runner.autoattack): an inflated robust accuracy is flagged,
an honest one is not; a missing torchattacks is one line; a rerun reads the cache; a missing model
is an error, never a training.

Unit tests on a linear quadrant model (AutoAttack "standard"); the end-to-end tests on a tiny TOMM
results directory built from synthetic IDX files and untrained LeNets (no Fashion-MNIST needed),
with AutoAttack "rand" (APGD-CE + APGD-DLR) to stay quick: what they check is the plumbing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn
import yaml

from conftest import quadrant_data, write_idx
from patchbench.audit import AUDIT_AUTOATTACK_GAP, INDICATORS
from patchbench.errors import PatchbenchError

import patchbench.runner.autoattack as aa  # noqa: E402  (our own module: a failing import must fail, never skip)

pytest.importorskip("torchattacks", reason="AutoAttack comes from torchattacks, the bench extra (`pip install -e '.[bench]'`)")


def quadrant_model(size=12):
    """Logit k = 10 × the mean of quadrant k: right on quadrant_data with a margin of ~0.5 in quadrant
    means, so ε = 0.3 breaks every image and ε = 0.01 none."""
    from patchbench.models import Classifier

    lin = nn.Linear(size * size, 4, bias=False)
    h = size // 2
    with torch.no_grad():
        w = torch.zeros(4, size, size)
        for k in range(4):
            r, c = divmod(k, 2)
            w[k, r * h:(r + 1) * h, c * h:(c + 1) * h] = 10 / h ** 2
        lin.weight.copy_(w.flatten(1))
    net = nn.Sequential(nn.Flatten(), lin)
    return Classifier(net, mean=(0.0,), std=(1.0,), name="quadrants", class_names=list("abcd"), image_size=size).requires_grad_(False)


def test_inflated_cell_is_flagged_and_honest_ones_are_not(one_thread):
    model, (x, y) = quadrant_model(), quadrant_data(16)
    assert bool((model(x).argmax(1) == y).all())
    broken = aa.autoattack_correct(model, x, y, 0.3)  # undefended linear model, ε = 0.3: nothing survives
    kept = aa.autoattack_correct(model, x, y, 0.01)  # a margin AutoAttack cannot cross at ε = 0.01
    assert broken.dtype == torch.bool and not broken.any() and kept.all()

    claimed = torch.ones(16, dtype=torch.bool)  # a cell claiming 100 % robust accuracy at ε = 0.3
    row = aa.compare(claimed, broken)
    assert row[AUDIT_AUTOATTACK_GAP] and row["reported_acc"] == 1.0 and row["autoattack_acc"] == 0.0
    assert row["broken_by_autoattack"] == 16 and row["gap"] > row["interval"] > 0
    assert not aa.compare(broken, broken)[AUDIT_AUTOATTACK_GAP]  # the reported number is AutoAttack's own
    assert not aa.compare(claimed, kept)[AUDIT_AUTOATTACK_GAP]  # 100 % at ε = 0.01 is the truth


def test_interval_is_the_reported_lower_half_width():
    """Fires exactly where AutoAttack's accuracy falls below the reported 95 % Wilson interval."""
    reported = torch.tensor([True] * 60 + [False] * 40)
    low = aa.compare(reported, reported)["reported_low"]
    for k in range(0, 61):
        row = aa.compare(reported, torch.tensor([True] * k + [False] * (100 - k)))
        assert row[AUDIT_AUTOATTACK_GAP] == (k / 100 < low - 1e-12), k
    ind = INDICATORS["autoattack_gap"]
    assert ind.column == AUDIT_AUTOATTACK_GAP and ind.function == "autoattack_gap"


def test_missing_torchattacks_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # `import torchattacks` raises ImportError
    msg = "the AutoAttack cross-check needs torchattacks: pip install -e '.[bench]'"
    with pytest.raises(PatchbenchError) as exc:
        aa.load_torchattacks()
    assert str(exc.value) == msg
    with pytest.raises(PatchbenchError, match="needs torchattacks"):  # before reading anything
        aa.autoattack_check("demo-tomm-fmnist", tmp_path / "nothing", "cpu")


# ---- end to end on a tiny TOMM results directory --------------------------------------------

EVASION = "[{name: fgsm, eps: 0.3}, {name: pgd, eps: 0.3, steps: 2, step_size: 0.1}, {name: pgd, eps: 0.05, steps: 2, step_size: 0.02}]"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(preset YAML, results): two untrained LeNets (raw, madry) stored as cached models, their
    cells (clean + FGSM/PGD at ε 0.3, PGD at ε 0.05) on 12 synthetic test images."""
    from patchbench.cache.models import model_path, state_id, with_training
    from patchbench.evaluation.grid import run_evasion_grid
    from patchbench.models import build_classifier
    from patchbench.presets import load_preset
    from patchbench.store.results import ResultStore
    from patchbench.util import atomic_write

    base = tmp_path_factory.mktemp("aa")
    write_idx(base / "idx", "test", 40, seed=1)
    raw = yaml.safe_load((Path(__file__).parents[1] / "patchbench/papers/tomm2022/presets/demo-tomm-fmnist.yaml").read_text())
    raw["data"].update(root=str(base / "idx"), eval_n=12, batch_size=12)
    raw["trainings"], raw["evasion"] = ["raw", "madry"], yaml.safe_load(EVASION)
    # the seeds of the trainings kept (the preset's training_seeds also name the ones left out, which it refuses)
    raw["training_seeds"] = {t: s for t, s in raw.get("training_seeds", {}).items() if t in raw["trainings"]}
    (base / "preset.yaml").write_text(yaml.safe_dump(raw))
    preset, results = load_preset(str(base / "preset.yaml")), base / "results"
    store, n = ResultStore(results), torch.get_num_threads()
    torch.set_num_threads(1)
    for seed, training in enumerate(preset.trainings):
        p = with_training(preset, training)
        torch.manual_seed(seed)
        model = build_classifier("lenet", "fashion-mnist", None, 28)
        path = model_path(p, store)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        atomic_write(path.with_suffix(".json"), f'{{"model_id": "{state_id(model)}"}}')
        run_evasion_grid(p, training, store, torch.device("cpu"), progress=False)
    torch.set_num_threads(n)
    return base / "preset.yaml", results


def inflate(results: Path, run_id: str) -> None:
    """Rewrite a stored cell (and its predictions) to claim every image robust."""
    cell, pred = results / "cells" / f"{run_id}.parquet", results / "predictions" / f"{run_id}.parquet"
    p = pd.read_parquet(pred).assign(pred=lambda d: d["label"])
    p.to_parquet(pred, index=False)
    c = pd.read_parquet(cell)
    c[["correct", "accuracy"]] = [len(p), 1.0]
    c.to_parquet(cell, index=False)


def test_check_rows_flag_and_cache(tiny, tmp_path, monkeypatch, one_thread):
    from patchbench.presets import load_preset

    yaml_path, stored = tiny
    results = tmp_path / "results"
    shutil.copytree(stored, results)
    preset = load_preset(str(yaml_path))
    cells = pd.concat([pd.read_parquet(f) for f in (results / "cells").glob("*.parquet")])
    attacked = cells[cells["condition"] == "attacked"]
    target = attacked[(attacked["training"] == "raw") & (attacked["attack_label"] == "PGD2")].sort_values("attack_params")
    inflate(results, target["run_id"].iloc[-1])  # the ε = 0.3 one ('"eps": 0.3' sorts after '"eps": 0.05')

    df = aa.autoattack_check(preset, results, "cpu", version="rand", progress=False)
    assert len(df) == len(attacked) == 6 and set(df["run_id"]) == set(attacked["run_id"])
    assert list(df["training"].unique()) == ["raw", "madry"] and set(df["eps"]) == {0.3, 0.05}
    assert (df["n"] == 12).all() and (df["n_cell"] == 12).all()
    now = pd.concat([pd.read_parquet(f) for f in (results / "cells").glob("*.parquet")])  # the inflated one too
    merged = df.merge(now[["run_id", "accuracy"]], on="run_id")
    assert (merged["reported_acc"] - merged["accuracy"]).abs().max() < 1e-12  # all images: the stored number
    assert (df[AUDIT_AUTOATTACK_GAP] == (df["gap"] > df["interval"])).all()
    inflated = df[df["run_id"] == target["run_id"].iloc[-1]].iloc[0]
    assert inflated["reported_acc"] == 1.0 and inflated[AUDIT_AUTOATTACK_GAP]
    caches = sorted((results / "audit" / "autoattack").glob("*.parquet"))
    assert len(caches) == 4  # 2 models × 2 ε

    def no_attack(*_a, **_k):
        raise AssertionError("AutoAttack ran again instead of reading its cache")

    monkeypatch.setattr(aa, "autoattack_correct", no_attack)
    again = aa.autoattack_check(preset, results, "cpu", version="rand", progress=False)
    pd.testing.assert_frame_equal(df, again)
    with pytest.raises(AssertionError, match="ran again"):  # another image subset is another key
        aa.autoattack_check(preset, results, "cpu", n=5, version="rand", progress=False)

    text = aa.render_autoattack(df, "markdown")
    assert "100.0 [" in text and " †" in text and f"† {AUDIT_AUTOATTACK_GAP}" in text
    assert "all 12 evaluation images" in text and "version rand" in text


def test_first_n_images_and_the_script(tiny, tmp_path, capsys, one_thread):
    yaml_path, stored = tiny
    results = tmp_path / "results"
    shutil.copytree(stored, results)
    assert aa.main(["--preset", str(yaml_path), "--results", str(results), "--n", "5", "--version", "rand",
                    "--no-progress"]) == 0
    text = (results / "demo" / "tomm2022-autoattack.md").read_text()
    assert "the first 5 of the cells' 12 evaluation images" in text and "PGD2" in text and "FGSM" in text
    assert aa.main(["--preset", str(yaml_path), "--results", str(results), "--n", "0"]) == 2
    assert "error: n must be a positive number" in capsys.readouterr().err


def test_missing_model_is_an_error_not_a_training(tiny, tmp_path):
    yaml_path, stored = tiny
    results = tmp_path / "results"
    shutil.copytree(stored, results)
    models = sorted((results / "artifacts" / "models").glob("*.pt"))
    models[0].unlink()
    with pytest.raises(PatchbenchError, match=r"not cached .*run `patchbench reproduce tomm2022` first"):
        aa.autoattack_check(str(yaml_path), results, "cpu", version="rand", progress=False)
    assert sorted((results / "artifacts" / "models").glob("*.pt")) == models[1:]
    with pytest.raises(PatchbenchError, match="no stored L∞ evasion cells"):
        aa.autoattack_check(str(yaml_path), tmp_path / "empty", "cpu", version="rand", progress=False)
