"""PatchCleanser's Cutout fine-tuning: the holes of the authors' utils/cutout.py, the ``cutout``
objective, and the fine-tuned model of a preset's ``certified: model:`` section."""

import pytest
import torch
import torch.nn as nn

from patchbench.config import TrainConfig
from patchbench.errors import PatchbenchError
from patchbench.models import Classifier
from patchbench.training.checks import validate_train
from patchbench.training.cutout import PAPER_FRACTION, CutoutMasks, cutout_keep, hole_length, holes_keep
from patchbench.training.objectives import check_objective, objective_names

from conftest import needs_fmnist, tiny_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def hole_box(keep: torch.Tensor) -> tuple[int, int, int, int]:
    """(first row, end row, first col, end col) of the zeros of a one-hole (1, 1, h, w) keep-mask."""
    rows = torch.nonzero((keep[0, 0] == 0).any(1)).squeeze(1)
    cols = torch.nonzero((keep[0, 0] == 0).any(0)).squeeze(1)
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# Hand-computed from utils/cutout.py with length 37 on a 64 x 64 image (length // 2 = 18):
# y1 = clip(y - 18, 0, 64), y2 = clip(y + 18, 0, 64), mask[y1:y2, x1:x2] = 0.
@pytest.mark.parametrize("y, x, box", [
    (32, 20, (14, 50, 2, 38)),   # inside: a 36 x 36 hole (2 * (37 // 2), not 37)
    (0, 0, (0, 18, 0, 18)),      # clipped at the top-left corner
    (63, 63, (45, 64, 45, 64)),  # clipped at the bottom-right corner: 19 rows (63 + 18 > 64)
    (5, 60, (0, 23, 42, 64)),
])
def test_hole_boxes_follow_the_reference_arithmetic(y, x, box):
    keep = holes_keep(torch.tensor([[y]]), torch.tensor([[x]]), 64, 64, 37)
    assert hole_box(keep) == box
    r0, r1, c0, c1 = box
    assert int((keep == 0).sum()) == (r1 - r0) * (c1 - c0)  # a rectangle, nothing else


def test_two_holes_may_overlap_and_union():
    keep = holes_keep(torch.tensor([[10, 12]]), torch.tensor([[10, 12]]), 32, 32, 8)
    # holes [6, 14)² and [8, 16)²: two 8 x 8 squares sharing a 6 x 6 one
    cut = keep[0, 0] == 0
    assert cut[6:14, 6:14].all() and cut[8:16, 8:16].all()
    assert int(cut.sum()) == 64 + 64 - 36


def test_hole_length_scales_the_authors_128_at_224():
    assert hole_length(224) == 128 and hole_length(64) == 37 and hole_length(28) == 16
    assert abs(PAPER_FRACTION - 128 / 224) < 1e-12
    with pytest.raises(PatchbenchError, match="fraction"):
        hole_length(64, 1.5)


def test_centres_are_uniform_so_each_pixel_is_covered_as_the_reference_says():
    """One hole, length 8 on 16 px: pixel r is covered iff the centre y has r - 4 < y <= r + 3 (the
    reference's y - 4 <= r < y + 4), so its row coverage is #{y in [0, 15]: r - 3 <= y <= r + 4} / 16."""
    g = torch.Generator().manual_seed(0)
    keep = cutout_keep(40000, 16, 16, 1, 8, g)
    row_cover = (keep[:, 0] == 0).any(2).float().mean(0)  # P(row r inside the hole)
    expected = torch.tensor([len([y for y in range(16) if r - 3 <= y <= r + 4]) / 16 for r in range(16)])
    assert torch.allclose(row_cover, expected, atol=0.012)


def test_holes_are_zero_in_the_normalized_tensor():
    """The reference multiplies the *normalized* image by the mask: a hole is 0 after normalization,
    i.e. the classifier's mean in pixel space; outside the holes the image is unchanged."""
    model = Classifier(nn.Identity(), (0.3, 0.5, 0.7), (0.2, 0.25, 0.3), "id", list("ab"))
    x = torch.rand(6, 3, 20, 20)
    masks = CutoutMasks(model, holes=2, fraction=0.4, seed=1)
    out = masks(x)
    g = torch.Generator().manual_seed(1)
    keep = cutout_keep(6, 20, 20, 2, hole_length(20, 0.4), g)  # the same draw
    assert torch.allclose(model.normalize(out), model.normalize(x) * keep, atol=1e-6)
    assert (keep == 0).any() and (keep == 1).any()


def test_sharded_draw_equals_the_global_batch():
    model = Classifier(nn.Identity(), (0.5,), (0.5,), "id", list("ab"))
    x = torch.rand(8, 1, 16, 16)
    whole = CutoutMasks(model, seed=3)(x)
    parts = []
    for r in range(2):
        m = CutoutMasks(model, seed=3)
        m.share = (r, 2)
        parts.append(m(x[r::2]))
    assert torch.equal(parts[0], whole[0::2]) and torch.equal(parts[1], whole[1::2])


def test_cutout_objective_is_registered_without_aad():
    assert "cutout" in objective_names() and "cutout+aad" not in objective_names()
    check_objective("cutout")
    with pytest.raises(PatchbenchError, match="unknown training objective"):
        check_objective("cutout+aad")
    validate_train(TrainConfig(training="cutout"))
    with pytest.raises(PatchbenchError, match="cutout_holes"):
        validate_train(TrainConfig(training="cutout", cutout_holes=0))
    with pytest.raises(PatchbenchError, match="cutout_fraction"):
        validate_train(TrainConfig(training="cutout", cutout_fraction=0))


def test_cutout_training_sees_only_masked_images(monkeypatch):
    """The objective's loss is the classification loss of the Cutout images (every image masked)."""
    from patchbench.data import TensorImages
    from patchbench.training import train

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 2))
    model = Classifier(net, (0.5,), (0.5,), "lin", list("ab"))
    seen = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda x: (seen.append(x.detach().clone()), real(x))[1])
    images = (torch.rand(32, 1, 16, 16) * 255).to(torch.uint8)
    train(model, TensorImages(images, torch.randint(0, 2, (32,))), torch.arange(32), 16,
          TrainConfig(epochs=1, batch_size=16, schedule="constant", training="cutout", cutout_fraction=0.5),
          torch.device("cpu"), progress=False)
    assert len(seen) == 2  # two batches, one forward each: no clean pass
    for batch in seen:  # every image has a hole at the mean (0.5): at least a corner's 4 x 4 (length 8, clipped)
        assert ((batch == 0.5).flatten(1).sum(1) >= 4 * 4).all()


@needs_fmnist
@pytest.mark.slow
def test_finetuned_model_starts_from_the_base_weights_and_is_cached(tmp_path, monkeypatch):
    """``ensure_finetuned``: 0 epochs give the base weights back (it starts from them); 1 epoch of Cutout
    changes them and records the base model; a second call loads the cache (no training)."""
    from dataclasses import replace

    from patchbench.cache import models as cache_models
    from patchbench.presets import load_preset
    from patchbench.store.results import ResultStore

    preset = load_preset(str(tiny_preset(tmp_path / "tiny.yaml")))
    preset = replace(preset, model=replace(preset.model, train=replace(preset.model.train, train_n=200, test_n=300)))
    store, cpu = ResultStore(tmp_path / "results"), torch.device("cpu")
    base = cache_models.ensure_model(preset, store, cpu, progress=False)
    assert base.meta["test_n"] == 300  # model.train.test_n: the test accuracy on a seeded subset of the test split
    same = cache_models.ensure_finetuned(preset, base, TrainConfig(epochs=0, training="cutout"), store, cpu, progress=False)
    assert same.model_id == base.model_id
    tune = TrainConfig(epochs=1, batch_size=50, train_n=200, optimizer="sgd", lr=0.01, schedule="step", training="cutout")
    tuned = cache_models.ensure_finetuned(preset, base, tune, store, cpu, progress=False)
    assert tuned.model_id != base.model_id
    assert tuned.meta["finetuned_from"] == base.model_id and tuned.meta["base_test_accuracy"] == base.meta["test_accuracy"]
    assert 0 <= tuned.meta["test_accuracy"] <= 1 and tuned.meta["train"]["training"] == "cutout"
    assert tuned.meta["test_n"] == 10000  # test_n = 0 (the fine-tuning's default): every Fashion-MNIST test image
    assert cache_models.ensure_model(preset, store, cpu, progress=False).model_id == base.model_id  # base untouched
    monkeypatch.setattr(cache_models, "train", lambda *a, **k: pytest.fail("trained again"))
    assert cache_models.ensure_finetuned(preset, base, tune, store, cpu, progress=False).model_id == tuned.model_id


def test_certified_cells_split_into_the_preset_model_and_the_finetuned_one():
    import pandas as pd

    from patchbench.sections.certified import split_models

    df = pd.DataFrame({"model_id": ["old", "base", "base", "ft0", "ft"], "training": [None, None, "raw", "cutout", "cutout"],
                       "x": range(5)})
    base, tuned = split_models(df)
    assert list(base["x"]) == [1, 2] and list(tuned["x"]) == [4]  # each keeps its latest model
    base, tuned = split_models(df.drop(columns="training"))
    assert list(base["x"]) == [4] and tuned.empty


def test_certified_table_prints_both_models_clean_accuracy(tmp_path):
    """The undefended classifier's rows beside the fine-tuned one's: its own no-defense row and the
    PatchCleanser rows, clean accuracy of both in the caption."""
    from patchbench.sections.certified import build_certified
    from patchbench.data import TensorImages
    from patchbench.defenses.base import NoDefense
    from patchbench.defenses.patchcleanser import PatchCleanser
    from patchbench.evaluation.engine import Condition, DefenseRun, EvalContext, evaluate
    from patchbench.store.results import ResultStore
    from patchbench.table import TableContext

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 12, 12, generator=gen)
    y = (x[:, 0, :, :6].mean((1, 2)) > x[:, 0, :, 6:].mean((1, 2))).long()  # brighter half
    source, idx, cpu = TensorImages((x * 255).round().to(torch.uint8), y), torch.arange(30), torch.device("cpu")
    store = ResultStore(tmp_path)

    def model(sign):
        net = nn.Sequential(nn.Flatten(), nn.Linear(144, 2))
        with torch.no_grad():
            net[1].weight.zero_()
            net[1].weight[0].view(12, 12)[:, :6] = sign
            net[1].weight[0].view(12, 12)[:, 6:] = -sign
            net[1].bias.zero_()
        return Classifier(net, (0.5,), (0.5,), "halves", list("rl")).requires_grad_(False)

    for mid, m, runs, extra in (("base", model(-1.0), [DefenseRun(NoDefense(), [None])], {}),
                                ("ft", model(1.0), [DefenseRun(NoDefense(), [None]), DefenseRun(PatchCleanser(patch_px=3, k=2))],
                                 {"training": "cutout"})):
        ctx = {"dataset": "halves", "split": "test", "eval_seed": 0, "image_size": 12, "model": "halves", "model_id": mid}
        evaluate(EvalContext(m, source, idx, 12, 30, store, cpu, ctx, {"preset": "halves", **extra}, progress=False),
                 [Condition(None)], runs)
    cells = store.load_cells()
    table, caption = build_certified(None, cells, TableContext("halves", {}, lambda name: None))
    rows = table.set_index("Defense")
    acc = {mid: cells[(cells["model_id"] == mid) & (cells["defense"] == "none")]["accuracy"].iloc[0] for mid in ("base", "ft")}
    assert rows.loc["No defense", "clean"] == f"{100 * acc['base']:.1f}"
    assert rows.loc["No defense, cutout-tuned", "clean"] == f"{100 * acc['ft']:.1f}"
    assert acc["base"] != acc["ft"] and "PatchCleanser 3 px (k=2)" in rows.index
    assert f"{100 * acc['base']:.1f} % undefended model, {100 * acc['ft']:.1f} % cutout-tuned model" in caption
