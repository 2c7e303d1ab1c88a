import pytest

from patchbench.attacks import evasion_label
from patchbench.presets import check_sets_reach_a_preset, load_preset, preset_names
from patchbench.errors import PatchbenchError


def test_all_presets_load():
    names = preset_names()
    assert {"demo-fmnist", "demo-fmnist-inception", "icaart2022-vgg16", "icaart2022-inception_v3",
            "tomm2022-mnist", "tomm2022-cifar10", "tomm2022-imagenet"} <= set(names)
    for n in names:
        p = load_preset(n)
        assert p.name == n
        # ICAART-style, TOMM-style, or published patches against defenses (ImageNet-Patch)
        assert (p.attacks and p.defenses) or (p.trainings and p.evasion) or ("imagenet_patch" in p.extra and p.defenses)


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
    # every λ printed in Tables 1-4 (and the Fig. 5 sweep) is evaluated
    assert {2.3, 2.7, 3.5} <= set(vgg.defenses[0].lambdas) and vgg.model.arch == "vgg16"
    assert {1.5, 1.9, 2.3, 3.5} <= set(inc.defenses[0].lambdas) and inc.model.arch == "inception_v3"


def test_overrides_and_errors():
    p = load_preset("demo-fmnist", ["data.eval_n=100", "attacks.0.steps=3", "model.train.epochs=1"])
    assert p.data.eval_n == 100 and p.attacks[0].steps == 3 and p.model.train.epochs == 1
    for bad, message in (
            ("data.bogus=1", "unknown key data.bogus (allowed: batch_size, dataset, "),
            ("model.arch=resnet9000", "unknown model 'resnet9000'; known: "),
            ("data.dataset=svhn", "unknown dataset 'svhn'; known: "),
            ("attacks.0.sizes=[64]", "patch size must be an integer in 1..63 px for 64 px images, got 64"),
            ("attacks.0.sizes=[0]", "patch size must be an integer in 1..63 px for 64 px images, got 0"),
            ("attacks.0.name=pixel", "unknown patch attack 'pixel'; known: "),
            ("defenses.0.name=jpeg", "unknown parameter 'overlap', 'space', 'threshold', 'window' for defense jpeg; "
             "allowed: quality, backend"),
            ("noequals", "--set expects key=value, got 'noequals'"),
            ("attacks.5.steps=1", "--set attacks.5.steps: '5' is not an index of that list")):
        with pytest.raises(PatchbenchError) as e:
            load_preset("demo-fmnist", [bad])
        assert str(e.value).startswith(message), (bad, str(e.value))
    with pytest.raises(PatchbenchError, match="unknown preset"):
        load_preset("nope")


def test_set_changes_a_work_section_the_preset_has_and_never_adds_one():
    """``--set certified.k=4`` on a preset without ``certified:`` would start a whole certified run (every other field
    at its default); a settings-only section (``sanity:``, whose absence means its defaults) may be added."""
    assert "certified" not in load_preset("icaart2022-vgg16").extra
    for item in ("certified.k=4", "certified.model.epochs=1", "patch-optimality.sizes=[20]"):
        with pytest.raises(PatchbenchError, match=f"--set {item.split('=')[0]}: preset icaart2022-vgg16 has no "
                                                   f"{item.split('.')[0]} section"):
            load_preset("icaart2022-vgg16", [item])
    assert load_preset("icaart2022-vgg16", ["sanity.min_success=0.5"]).extra["sanity"].min_success == 0.5
    assert load_preset("demo-fmnist", ["certified.k=4"]).extra["certified"].k == 4
    # reproduce: one --set for all of a paper's presets reaches those with the section, and at least one must have it
    vgg = load_preset("demo-fmnist", ["certified.n=50"], skip_absent_sections=True)
    inc = load_preset("demo-fmnist-inception", ["certified.n=50"], skip_absent_sections=True)
    assert vgg.extra["certified"].n == 50 and "certified" not in inc.extra
    check_sets_reach_a_preset([vgg, inc], ["certified.n=50", "data.eval_n=10"])
    with pytest.raises(PatchbenchError, match=r"--set certified.n: none of the presets \(demo-fmnist-inception\) has a "
                                              "certified section"):
        check_sets_reach_a_preset([inc], ["certified.n=50"])


def test_icaart_presets_hold_slgs_wlgs_adversarial_patch_and_adaptive():
    for name in ("icaart2022-vgg16", "icaart2022-inception_v3"):
        p = load_preset(name)
        ap = [a for a in p.attacks if a.name == "adversarial_patch"][0]
        assert ap.sizes == [90] and ap.target == 429 and ap.random_placement and ap.placement == "top-right"
        by = {d.name: d for d in p.defenses}
        assert by["slgs"].params["erosions"] == 2 and by["slgs"].params["dilations"] == 3
        for d in ("lgs", "slgs", "wlgs"):
            assert 3.5 in by[d].lambdas and by[d].params["window"] == 15
        assert p.extra["adaptive"].defenses == ["lgs", "slgs", "wlgs"]


def test_tomm_presets_hold_the_papers_settings():
    mnist, cifar, imnet = (load_preset(f"tomm2022-{d}") for d in ("mnist", "cifar10", "imagenet"))
    assert (mnist.model.arch, mnist.model.train.batch_size, mnist.model.train.lr, mnist.model.train.epochs) == ("lenet", 100, 1e-3, 5)
    assert (cifar.model.arch, cifar.model.train.batch_size, cifar.model.train.lr, cifar.model.train.epochs) == ("resnet9", 100, 1e-4, 200)
    t = imnet.model.train
    assert (imnet.model.arch, t.batch_size, t.lr, t.lr_decay, t.lr_decay_every, t.schedule) == ("resnet50", 128, 0.045, 0.94, 2, "step")
    for p, eps in ((mnist, 0.3), (cifar, 8 / 255), (imnet, 16 / 255)):
        assert p.trainings == ["raw", "madry", "madry+aad", "alp", "alp+aad"]
        assert (p.model.train.aad_alpha, p.model.train.aad_beta) == (0.01, 0.01)
        table6 = [e for e in p.evasion if not (e.column or "").startswith("T7")]
        assert [evasion_label(e) for e in table6] == ["FGSM", "PGD10", "PGD20", "PGD40", "PGD100", "CW10", "CW20", "CW40", "CW100"]
        assert all(abs(e.eps - eps) < 1e-6 for e in table6)


@pytest.mark.parametrize("override,match", [
    ("evasion.0.eps=0", "eps"), ("evasion.0.eps=2", "eps"), ("evasion.1.steps=0", "steps"),
    ("evasion.1.steps=1.5", "steps"), ("evasion.1.step_size=-1", "step_size"), ("evasion.0.name=pgdd", "unknown evasion"),
    ("trainings=[madry,foo]", "unknown training"), ("model.train.eps=0", "eps"),
    ("training_seeds={lat: [0, 1]}", "training_seeds.lat: not one of trainings"),
    ("training_seeds={madry: []}", "non-empty list of distinct integers"),
    ("training_seeds={madry: [0, 0]}", "non-empty list of distinct integers"),
    ("training_seeds={madry: [0, x]}", "non-empty list of distinct integers"),
    ("training_seeds=[0, 1]", "training_seeds must be a mapping"),
])
def test_bad_evasion_settings_are_one_line_errors(override, match):
    with pytest.raises(PatchbenchError, match=match):
        load_preset("tomm2022-mnist", [override])


def test_training_seeds_per_objective():
    p = load_preset("tomm2022-mnist", ["training_seeds={madry: [3, 1], alp+aad: [2]}", "model.train.seed=7"])
    assert p.seeds_of("madry") == [3, 1] and p.seeds_of("alp+aad") == [2] and p.seeds_of("raw") == [7]
