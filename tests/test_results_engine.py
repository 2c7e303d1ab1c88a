
import pandas as pd
import pytest
import torch
import torch.nn as nn

from patchbench.attacks.patch import Patch
from patchbench.data import TensorImages
from patchbench.defenses.base import NoDefense
from patchbench.defenses.lgs import LGS
from patchbench.evaluation.engine import Condition, DefenseRun, EvalContext, evaluate
from patchbench.models import Classifier
from patchbench.store.results import ResultStore, run_id, wilson_ci


def test_wilson_against_known_values():
    lo, hi = wilson_ci(50, 100)
    assert abs(lo - 0.4038) < 1e-4 and abs(hi - 0.5962) < 1e-4
    lo, hi = wilson_ci(0, 20)
    assert lo == 0 and abs(hi - 0.1611) < 1e-4


def test_run_id_depends_on_key_only():
    key = {"dataset": "d", "lam": 2.3, "defense": "lgs"}
    assert run_id(key) == run_id({**key, "seconds": 5})
    assert run_id(key) != run_id({**key, "lam": 2.7})


class CountingLGS(LGS):
    calls = 0

    def maps(self, x, model=None):
        CountingLGS.calls += 1
        return super().maps(x, model)


def tiny_setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    model = Classifier(net, (0.5,), (0.5,), "tiny", ["a", "b", "c"], 16).requires_grad_(False)
    images = (torch.rand(50, 1, 16, 16) * 255).to(torch.uint8)
    source = TensorImages(images, torch.randint(0, 3, (50,)))
    patch = Patch(torch.rand(1, 4, 4), torch.ones(1, 4, 4), {"attack": "lavan", "target": 1, "placement": "top-right", "margin": 1})
    return model, source, patch


def test_engine_grid_amortizes_maps_and_resumes(tmp_path):
    model, source, patch = tiny_setup()
    store = ResultStore(tmp_path)
    conds = [Condition(None), Condition(patch)]
    runs = [DefenseRun(NoDefense(), [None]), DefenseRun(CountingLGS(window=5, overlap=2), [1.5, 2.3, 3.5])]
    ctx = {"dataset": "synthetic", "split": "test", "eval_seed": 0, "image_size": 16, "model": "tiny", "model_id": "x"}
    CountingLGS.calls = 0
    idx = torch.arange(50)
    rows = evaluate(EvalContext(model, source, idx, 16, 20, store, torch.device("cpu"), ctx, progress=False), conds, runs)
    assert len(rows) == 2 * (1 + 3) and rows["run_id"].is_unique
    assert CountingLGS.calls == 2 * 3  # 2 conditions x 3 batches, not x 3 lambdas

    # counts agree with an independent computation and with the stored predictions
    for r in rows.itertuples():
        x = source.batch(idx, 16, torch.device("cpu"))
        xc = patch.apply(x) if r.condition == "attacked" else x
        xd = xc if r.defense == "none" else LGS(window=5, overlap=2)(xc, r.lam)
        pred = model(xd).argmax(1)
        assert r.correct == int((pred == source.labels).sum())
        preds = store.load_predictions(r.run_id)
        assert (preds["pred"].to_numpy() == pred.numpy()).all()
        if r.condition == "attacked":
            nt = source.labels != 1
            assert r.target_hits == int(((pred == 1) & nt).sum()) and r.n_nontarget == int(nt.sum())
            # defense success rate: of the images the undefended model gets right clean, still right;
            # a targeted patch's (target 1) leaves out the images of the target class
            clean_ok = (model(x).argmax(1) == source.labels) & nt
            assert r.n_clean_correct == int(clean_ok.sum())
            assert r.kept_correct == int(((pred == source.labels) & clean_ok).sum())
        # the mean cross-entropy (AdvML 2019 reports losses), against F.cross_entropy on the whole set
        assert r.loss == pytest.approx(float(torch.nn.functional.cross_entropy(model(xd), source.labels)), rel=1e-5)
        # and per image, in the predictions (claims on losses pair two cells image by image)
        per_image = torch.nn.functional.cross_entropy(model(xd), source.labels, reduction="none")
        assert preds["loss"].to_numpy() == pytest.approx(per_image.detach().numpy(), rel=1e-5, abs=1e-6)

    CountingLGS.calls = 0
    again = evaluate(EvalContext(model, source, idx, 16, 20, store, torch.device("cpu"), ctx, progress=False), conds, runs)
    assert CountingLGS.calls == 0  # everything stored: no work
    pd.testing.assert_frame_equal(rows, again)
    assert len(list((tmp_path / "cells").iterdir())) == 8


class CornerReader(nn.Module):
    """Reads the label from the bottom-left pixel (label / 2), unless the top-right corner is white:
    then class 1, what a class-1 targeted patch there achieves."""

    def forward(self, x):
        label = (x[:, 0, -1, 0] * 2).round().long()
        hit = x[:, 0, :2, -2:].mean((1, 2)) > 0.99
        return nn.functional.one_hot(torch.where(hit, 1, label), 3).float()


def test_targeted_defense_success_leaves_out_the_target_class(tmp_path):
    """BMVC α for a targeted patch: of the clean-correct images whose class is not the target, the
    share still correct; the target class's images ("correct" = "the target") are not counted, an
    untargeted patch counts every image."""
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 1, 0])
    images = torch.zeros(8, 1, 8, 8, dtype=torch.uint8)
    images[:, 0, -1, 0] = (labels * 255 / 2).round().to(torch.uint8)
    source = TensorImages(images, labels)
    white = torch.ones(1, 2, 2)
    ctx = {"dataset": "synthetic", "split": "test", "eval_seed": 0, "image_size": 8, "model": "corner", "model_id": "c"}
    for target, n_base, kept in ((1, 5, 0), (None, 8, 3)):
        patch = Patch(white, torch.ones(1, 2, 2), {"attack": "adversarial_patch", "target": target, "placement": "top-right",
                                                    "margin": 0})
        setup = EvalContext(CornerReader(), source, torch.arange(8), 8, 4, ResultStore(tmp_path / str(target)),
                            torch.device("cpu"), ctx, progress=False)
        rows = evaluate(setup, [Condition(patch)], [DefenseRun(NoDefense(), [None])])
        r = rows.iloc[0]
        assert (r["n_clean_correct"], r["kept_correct"], r["correct"]) == (n_base, kept, 3)
        assert r["defense_success_rate"] == kept / n_base


def test_store_write_is_whole_files_only(tmp_path):
    import subprocess
    import sys

    from patchbench.util import _HOST

    store = ResultStore(tmp_path).ensure()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (store.cells_dir / f".abc.parquet.tmp{_HOST}-{dead.stdout.strip()}").write_bytes(b"partial")  # a killed writer's
    (store.cells_dir / ".old.parquet.tmp123456789").write_bytes(b"partial")  # an older patchbench's name, pid gone
    ResultStore(tmp_path).ensure()
    assert list(store.cells_dir.iterdir()) == []
    assert store.load_cells().empty


def test_concurrent_writers_temp_files_are_left_alone(tmp_path):
    """A shard still writing (this process, or another host on a shared filesystem) keeps its temp file;
    only dead writers' temps and very old ones are removed."""
    import os
    import time

    from patchbench.util import _HOST

    store = ResultStore(tmp_path).ensure()
    live = store.cells_dir / f".a.parquet.tmp{_HOST}-{os.getpid()}"
    other = store.cells_dir / ".b.parquet.tmpotherhost-1"
    ancient = store.cells_dir / ".c.parquet.tmpotherhost-2"
    for f in (live, other, ancient):
        f.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(ancient, (old, old))
    ResultStore(tmp_path).ensure()
    assert sorted(f.name for f in store.cells_dir.iterdir()) == sorted([live.name, other.name])


@pytest.fixture
def declared(monkeypatch):
    """Column declarations made in a test are undone after it."""
    from patchbench.store import columns

    monkeypatch.setattr(columns, "_DECLARED", dict(columns._DECLARED))


CTX = {"dataset": "synthetic", "split": "test", "eval_seed": 0, "image_size": 16, "model": "tiny", "model_id": "x"}


def test_a_plugin_declared_column_round_trips_through_the_store(tmp_path, declared):
    from patchbench.api import Column, declare_columns

    declare_columns("toy-paper", Column("toy_score", "float"), Column("toy_variant", "str", key=True))
    declare_columns("toy-paper", Column("toy_score", "float"))  # the same declaration again: a no-op
    model, source, patch = tiny_setup()
    store = ResultStore(tmp_path)
    conds, runs, idx = [Condition(None), Condition(patch)], [DefenseRun(NoDefense(), [None])], torch.arange(20)

    def grid(**extra):
        return evaluate(EvalContext(model, source, idx, 16, 20, store, torch.device("cpu"), CTX, extra, progress=False),
                        conds, runs)

    a = grid(toy_score=0.25, toy_variant="a")
    b = grid(toy_score=0.5, toy_variant="b")  # a key column: its own cells, not a resumed "a"
    plain = grid()  # unset (None): the run ids any cell had before the column existed
    assert list(a["toy_score"]) == [0.25, 0.25] and list(b["toy_variant"]) == ["b", "b"]
    assert set(plain["run_id"]) == {run_id({**CTX, **Condition(c.patch).fields(), **runs[0].fields(), "lam": None,
                                            "eval_n": 20}) for c in conds}
    assert len({*a["run_id"], *b["run_id"], *plain["run_id"]}) == 6
    cells = store.load_cells().set_index("run_id")
    assert cells.loc[a["run_id"], "toy_score"].tolist() == [0.25, 0.25]
    assert cells.loc[b["run_id"], "toy_variant"].tolist() == ["b", "b"]
    assert cells.loc[plain["run_id"], "toy_variant"].isna().all()


def test_an_undeclared_or_mistyped_column_is_refused_not_dropped(tmp_path, declared):
    from patchbench.api import Column, declare_columns
    from patchbench.errors import PatchbenchError

    model, source, _ = tiny_setup()
    store = ResultStore(tmp_path)
    with pytest.raises(PatchbenchError, match=r"^result column 'toy_bogus' is not declared; declare it with "
                                              r"patchbench\.api\.declare_columns"):
        evaluate(EvalContext(model, source, torch.arange(20), 16, 20, store, torch.device("cpu"), CTX, {"toy_bogus": 1},
                             progress=False), [Condition(None)], [DefenseRun(NoDefense(), [None])])
    assert not (tmp_path / "cells").exists() or not list((tmp_path / "cells").iterdir())
    with pytest.raises(PatchbenchError, match="'toy_bogus' is not declared"):
        store.write({"run_id": "r1", "toy_bogus": 1}, pd.DataFrame({"index": [0]}))
    with pytest.raises(PatchbenchError, match=r"'accuracy' \(core\) holds str 'high', declared float"):
        store.write({"run_id": "r1", "accuracy": "high"}, pd.DataFrame({"index": [0]}))
    assert not list(store.cells_dir.iterdir())
    declare_columns("toy-paper", Column("toy_score", "float"))
    with pytest.raises(PatchbenchError, match="'toy_score' is declared twice: by toy-paper and by other"):
        declare_columns("other", Column("toy_score", "float"))
    with pytest.raises(PatchbenchError, match="'accuracy' is declared twice: by core and by toy-paper"):
        declare_columns("toy-paper", Column("accuracy", "str"))
    with pytest.raises(PatchbenchError, match="dtype must be one of"):
        declare_columns("toy-paper", Column("toy_when", "datetime"))


def test_a_defense_mask_is_measured_per_cell(tmp_path):
    """masked_pct: the mean share of pixels a defense's maps["mask"] marks (DW's inpainted region),
    over every image of the cell (batches of 20, 20 and 10), in %; None for a defense without one."""
    from patchbench.defenses.dw import DigitalWatermarking

    model, source, patch = tiny_setup()
    dw = DigitalWatermarking(threshold=1.0, erosions=0, dilations=0)  # marks some pixels of these images
    ctx = {"dataset": "synthetic", "split": "test", "eval_seed": 0, "image_size": 16, "model": "tiny", "model_id": "x"}
    idx = torch.arange(50)
    rows = evaluate(EvalContext(model, source, idx, 16, 20, ResultStore(tmp_path), torch.device("cpu"), ctx, progress=False),
                    [Condition(patch)], [DefenseRun(NoDefense(), [None]), DefenseRun(dw, [None])])
    x = patch.apply(source.batch(idx, 16, torch.device("cpu")))
    want = 100 * float(dw.mask(x, model).double().mean())
    got = rows.set_index("defense")["masked_pct"]
    assert 0 < want < 100 and got["dw"] == pytest.approx(want, rel=1e-9)
    assert pd.isna(got["none"])


def test_a_cell_file_is_read_once_until_it_changes_and_no_frame_attrs_are_stored(tmp_path):
    """Each cell file is read once per process (a reproduce reads every cell several times); a file replaced
    (a rerun's atomic rename) or damaged is read again, and a frame's attrs never reach a stored file."""
    import os

    import pyarrow.parquet as pq

    model, source, patch = tiny_setup()
    store = ResultStore(tmp_path)
    ctx = EvalContext(model, source, torch.arange(20), 16, 20, store, torch.device("cpu"), CTX, {}, progress=False)
    rows = evaluate(ctx, [Condition(None), Condition(patch)], [DefenseRun(NoDefense(), [None])])
    first, second = (store.cells_dir / f"{rid}.parquet" for rid in rows["run_id"])
    assert store.load_cells().set_index("run_id")["accuracy"].to_dict() == rows.set_index("run_id")["accuracy"].to_dict()
    changed = pd.read_parquet(first).assign(accuracy=0.125)
    changed.to_parquet(tmp_path / "new.parquet")
    os.replace(tmp_path / "new.parquet", first)  # as a writer replaces a file: whole, under a new inode
    again = store.load_cells().set_index("run_id")
    assert again.loc[first.stem, "accuracy"] == 0.125 and ResultStore(tmp_path).read_cell(first.stem)["accuracy"] == 0.125
    second.write_bytes(b"damaged in place")
    assert store.load_cells()["run_id"].tolist() == [first.stem]  # left out, not served from what was read before
    verdicts = pd.DataFrame({"run_id": [first.stem], "audit_notes": [""]})
    verdicts.attrs["outcomes"] = {first.stem: "a large dict an audit keeps beside its frame"}
    path = store.write_audit("tiny", verdicts)
    assert b"outcomes" not in pq.read_schema(path).metadata[b"pandas"] and store.load_audit("tiny").attrs == {}
