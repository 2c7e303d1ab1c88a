"""One GPU well used (issue 12 Part 3), tested on the CPU: autocast prediction passes (--amp),
uint8 ImageFolder batches decoded by the workers and turned into floats on the device."""

import pandas as pd
import pytest
import torch
from PIL import Image

from patchbench.presets import load_preset
from patchbench.data import FolderImages, iterate
from patchbench.defenses.base import NoDefense
from patchbench.evaluation.engine import Condition, DefenseRun, EvalContext, evaluate
from patchbench.errors import PatchbenchError
from patchbench.store.results import ResultStore, one_precision, run_id
from patchbench.cache.models import model_config_hash
from tests.conftest import make_image_folder, run_cli
from tests.test_results_engine import tiny_setup

CTX = {"dataset": "synthetic", "split": "test", "eval_seed": 0, "image_size": 16, "model": "tiny", "model_id": "x"}


def test_fp32_run_ids_do_not_change_and_amp_cells_are_their_own():
    key = {"dataset": "d", "lam": 2.3, "defense": "lgs"}
    assert run_id(key) == run_id({**key, "amp": None})
    assert run_id({**key, "amp": "bf16"}) not in (run_id(key), run_id({**key, "amp": "fp16"}))


def test_amp_is_an_evaluation_setting_not_part_of_the_model():
    p = load_preset("demo-fmnist")
    q = load_preset("demo-fmnist", ["model.amp=bf16"])
    assert q.model.amp == "bf16" and model_config_hash(p) == model_config_hash(q)  # same cached weights
    with pytest.raises(PatchbenchError, match="model.amp"):
        load_preset("demo-fmnist", ["model.amp=fp8"])


@pytest.mark.parametrize("amp,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_engine_predicts_under_autocast_and_stores_separate_cells(tmp_path, amp, dtype):
    model, source, patch = tiny_setup()
    seen = []
    model.net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    store = ResultStore(tmp_path)
    conds, runs = [Condition(None), Condition(patch)], [DefenseRun(NoDefense(), [None])]
    idx = torch.arange(50)
    fp32 = evaluate(EvalContext(model, source, idx, 16, 25, store, torch.device("cpu"), CTX, progress=False), conds, runs)
    assert set(seen) == {torch.float32}
    seen.clear()
    low = evaluate(EvalContext(model, source, idx, 16, 25, store, torch.device("cpu"), {**CTX, "amp": amp},
                               progress=False, amp=amp), conds, runs)
    assert set(seen) == {dtype}  # every prediction pass ran in the autocast dtype
    assert set(low["amp"]) == {amp} and fp32["amp"].isna().all()
    assert not set(low["run_id"]) & set(fp32["run_id"])
    # the stored predictions agree with fp32 on (nearly) every image of this tiny model
    for a, b in zip(low.sort_values("condition")["run_id"], fp32.sort_values("condition")["run_id"]):
        same = (store.load_predictions(a)["pred"] == store.load_predictions(b)["pred"]).mean()
        assert same >= 0.9


def test_tables_show_one_precision_per_preset():
    cells = pd.DataFrame({"preset": ["a", "a", "b"], "amp": [None, "bf16", "bf16"], "accuracy": [0.5, 0.6, 0.7]})
    kept = one_precision(cells)
    assert list(kept["accuracy"]) == [0.5, 0.7]  # fp32 wins where both exist; amp-only presets stay
    assert one_precision(cells.drop(columns="amp")).equals(cells.drop(columns="amp"))


def test_cli_rejects_an_unknown_amp_before_any_work(tmp_path):
    r = run_cli("evaluate", "--amp", "fp8", "--results", str(tmp_path / "r"), check=False)
    assert r.returncode == 2 and "model.amp" in r.stderr and not (tmp_path / "r").exists()


def test_folder_batches_are_uint8_on_the_bus_and_equal_to_totensor(tmp_path):
    from torchvision import transforms

    make_image_folder(tmp_path, per_class=3, size=40)
    source = FolderImages(tmp_path / "val", 24)
    assert source.dataset[0][0].dtype == torch.uint8  # what the workers hand over
    idx = torch.arange(len(source))
    got = torch.cat([x for _, x, _ in iterate(source, idx, 24, 4, torch.device("cpu"), num_workers=2)])
    ref_tf = transforms.Compose([transforms.Resize((24, 24), antialias=True), transforms.ToTensor()])
    ref = torch.stack([ref_tf(Image.open(p).convert("RGB")) for p, _ in source.dataset.samples])
    assert got.dtype == torch.float32 and torch.equal(got, ref)
