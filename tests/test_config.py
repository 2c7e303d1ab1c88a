import pytest

from patchbench.config import load_preset, preset_names
from patchbench.errors import PatchbenchError


def test_all_presets_load():
    names = preset_names()
    assert {"demo-fmnist", "icaart2022-vgg16", "icaart2022-inception_v3"} <= set(names)
    for n in names:
        p = load_preset(n)
        assert p.name == n and p.attacks and p.defenses


def test_paper_presets_hold_the_papers_settings():
    vgg = load_preset("icaart2022-vgg16")
    inc = load_preset("icaart2022-inception_v3")
    for p in (vgg, inc):
        assert p.data.dataset == "imagenet" and p.data.image_size == 400 and p.data.eval_n == 5000
        a = p.attacks[0]
        assert a.sizes == [42, 52, 60] and a.margin == 10 and a.placement == "top-right"
        assert a.batch_size == 20 and a.steps == 200 * 50 and a.lr == 1.0
        assert a.lr_milestones == [160 * 50, 180 * 50] and a.lr_gamma == 0.1
        d = p.defenses[0]
        assert d.params == {"window": 15, "overlap": 5, "threshold": 0.2, "space": "normalized"}
    assert vgg.defenses[0].lambdas == [2.3, 2.7, 3.5] and vgg.model.arch == "vgg16"
    assert inc.defenses[0].lambdas == [1.5, 1.9, 2.3] and inc.model.arch == "inception_v3"


def test_overrides_and_errors():
    p = load_preset("demo-fmnist", ["data.eval_n=100", "attacks.0.steps=3", "model.train.epochs=1"])
    assert p.data.eval_n == 100 and p.attacks[0].steps == 3 and p.model.train.epochs == 1
    for bad in (["data.bogus=1"], ["model.arch=resnet9000"], ["data.dataset=svhn"], ["attacks.0.sizes=[64]"],
                ["attacks.0.sizes=[0]"], ["attacks.0.name=pixel"], ["defenses.0.name=jpeg"], ["noequals"],
                ["attacks.5.steps=1"]):
        with pytest.raises(PatchbenchError):
            load_preset("demo-fmnist", bad)
    with pytest.raises(PatchbenchError, match="unknown preset"):
        load_preset("nope")
