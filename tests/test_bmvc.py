"""BMVC 2023 (volumization + curriculum) end to end: the patch-aggregate loss against a per-patch
loop, a volumetric classifier through the generic layers (model cache, white-box patch), the demo
reproduce at tiny scale (both halves of Table 2, Fig. 2/3, rerun reuses every cell), the paper
presets on stand-ins (synthetic CIFAR-10 pickles, a synthetic ImageFolder) and bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import cells, make_image_folder, needs_fmnist, run_cli, write_cifar

TINY = ["--set", "data.eval_n=30", "--set", "data.batch_size=30", "--set", "model.train.train_n=600",
        "--set", "model.train.epochs=1", "--set", "model.train.batch_size=50", "--set", "volumetric.validation_n=10",
        "--set", "volumetric.validation_population=6", "--set", "volumetric.validation_iterations=1",
        "--set", "attacks.0.steps=3", "--set", "attacks.0.train_pool=200", "--set", "attacks.0.success_n=50",
        "--set", "evasion.0.params.population=6", "--set", "evasion.0.params.iterations=1",
        "--set", "evasion.1.params.population=6", "--set", "evasion.1.params.iterations=1",
        "--set", "evasion.2.params.population=6", "--set", "evasion.2.params.iterations=1",
        "--set", "volumetric.train.epochs=1"]


def test_pal_is_the_sum_of_per_patch_cross_entropies():
    """Eq. 10 against a plain loop over images and patches with F.cross_entropy on one row each."""
    from patchbench.config import TrainConfig
    from patchbench.training.objectives import PatchAggregate

    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, 10, generator=g)
    y = torch.randint(0, 10, (5,), generator=g)
    ours = PatchAggregate().terms(z, None, y, TrainConfig(training="pal"))["Lc"]
    loop = sum(float(F.cross_entropy(z[b, n][None], y[b][None])) for b in range(5) for n in range(4)) / 5
    assert abs(float(ours) - loop) < 1e-5


def test_pal_needs_a_volumetric_model():
    from patchbench.errors import PatchbenchError
    from patchbench.training.objectives import PatchAggregate

    with pytest.raises(PatchbenchError, match="volumetric model"):
        PatchAggregate().logits(torch.nn.Linear(3, 2), torch.zeros(1, 3))


def test_volumetric_classifier_is_a_classifier_and_untargeted_patch_trains_through_it(one_thread):
    """A VolumetricClassifier from the registry: per-patch logits (B, N, k), aggregated logits, and
    an untargeted patch optimised through the volumizer's gather lowers the true-class probability."""
    from patchbench.attacks import AdversarialPatch, Placement
    from patchbench.config import VolumizeConfig
    from patchbench.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier("small_vgg", "fashion-mnist", None, 32, volumize=VolumizeConfig(patch=16, metric="mi"))
    x = torch.rand(8, 1, 32, 32)
    y = model(x).argmax(1)
    assert model.per_patch_logits(x).shape == (8, 4, 10) and model(x).shape == (8, 10)
    atk = AdversarialPatch(model, 12, None, Placement("top-left", 0), 32, steps=15, lr=0.1, optimizer="adam",
                           random_placement=False, progress=False)
    pixels = torch.rand(1, 12, 12, requires_grad=True)
    from patchbench.attacks.patch import paste

    F.log_softmax(model(paste(x, pixels, torch.ones(1, 12, 12), 0, 0)), 1).gather(1, y[:, None]).mean().backward()
    assert pixels.grad.abs().sum() > 0  # the gradient reaches the patch through the volumizer's gather
    with torch.no_grad():
        before = float(F.log_softmax(model(paste(x, pixels, torch.ones(1, 12, 12), 0, 0)), 1).gather(1, y[:, None]).mean())
    patch = atk.fit(iter([(x, y)] * 15), channels=1)
    with torch.no_grad():
        after = float(F.log_softmax(model(patch.apply(x, Placement("top-left", 0))), 1).gather(1, y[:, None]).mean())
    assert after < before  # untargeted: the true class's log-probability went down


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    results = tmp_path_factory.mktemp("bmvc") / "results"
    out = results / "reports"
    run_cli("reproduce", "bmvc2023", "--preset-scale", "demo", "--results", results, "--out", out, "--no-progress", *TINY)
    return results, out


@needs_fmnist
@pytest.mark.slow
def test_demo_prints_both_halves_of_table2_and_writes_the_figures(demo):
    results, out = demo
    df = cells(results)
    assert set(df["method"]) == {"undefended", "volumized-mi", "volumized-h"}
    assert set(df["patch_source"].dropna()) == {"undefended", "self"}
    npix = df[df["attack"] == "npixel"]
    # 3 N-pixel entries x 5 regions on each of the 3 models; LGS and DW also on f's
    assert len(npix[npix["defense"] == "none"]) == 3 * 5 * 3
    assert npix["attack_label"].str.endswith(("top-left", "top-right", "bottom-left", "bottom-right", "center")).all()
    attacked = df[df["condition"] == "attacked"]
    assert attacked["defense_success_rate"].between(0, 1).all()
    top = (out / "bmvc2023-2-top.md").read_text()
    for s in ("Undefended", "MI/Ours", "H/Ours", "reported in the paper, not run", "98.90", "35.90", "Acc_attack (1-pixel) ours"):
        assert s in top, s
    bottom = (out / "bmvc2023-2-bottom.md").read_text()
    for s in ("LGS (λ=2.3) on undefended", "DW on undefended", "Jujutsu", "95.60", "α ours, transfer patches"):
        assert s in bottom, s
    for fig in ("demo-bmvc-fmnist-fig2.png", "demo-bmvc-fmnist-fig3.png"):
        with Image.open(out / fig) as im:
            assert im.size[0] > 500
    models = list((results / "artifacts/models").glob("*volumetric*.json"))
    assert len(models) == 2


@needs_fmnist
@pytest.mark.slow
def test_demo_rerun_reuses_everything(demo, tmp_path):
    results, _ = demo
    before = {f.name: f.stat().st_mtime_ns for f in (results / "cells").iterdir()}
    artifacts = {f.name: f.stat().st_mtime_ns for f in (results / "artifacts").rglob("*.pt")}
    run_cli("reproduce", "bmvc2023", "--preset-scale", "demo", "--results", results, "--out", tmp_path / "again",
            "--no-progress", *TINY)
    assert {f.name: f.stat().st_mtime_ns for f in (results / "cells").iterdir()} == before
    assert {f.name: f.stat().st_mtime_ns for f in (results / "artifacts").rglob("*.pt")} == artifacts


STAND_IN = ["--set", "data.eval_n=6", "--set", "data.batch_size=6", "--set", "model.train.epochs=1",
            "--set", "model.train.train_n=8", "--set", "model.train.batch_size=4", "--set", "volumetric.validation_n=0",
            "--set", "attacks.0.steps=1", "--set", "attacks.0.batch_size=4", "--set", "attacks.0.train_pool=8",
            "--set", "attacks.0.success_n=4", "--set", "attacks.0.restarts=1",
            "--set", "evasion=[{name: npixel, params: {pixels: 1, population: 4, iterations: 1}}]"]


@pytest.mark.slow
def test_cifar10_preset_on_synthetic_pickles(tmp_path):
    """The paper preset's code path: torchvision archs from scratch, made volumetric, PAL + syllabus."""
    root = write_cifar(tmp_path / "cifar")
    results = tmp_path / "results"
    run_cli("sweep", "--preset", "bmvc2023-cifar10", "--data-root", root, "--results", results, "--no-progress", *STAND_IN,
            "--set", "volumetric.architectures=[resnet50]", "--set", "volumetric.syllabi=[{metric: mi, label: MI}]",
            "--set", "attacks.0.sizes=[8]", "--set", "defenses=[{name: lgs, lambdas: [2.3]}]")
    df = cells(results)
    assert set(df["model"]) == {"resnet50"} and set(df["method"]) == {"undefended", "volumized-mi"}
    r = run_cli("table", "bmvc2023-2-top", "--preset", "bmvc2023-cifar10", "--results", results, "--format", "markdown")
    assert "MI/Ours" in r.stdout and "91.30" in r.stdout


@pytest.mark.slow
def test_cifar100_preset_on_synthetic_pickles(tmp_path):
    """CIFAR-100's archive layout (train / test pickles, fine labels), EfficientNet-B0 from scratch."""
    import pickle

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 60), ("test", 30)):
        batch = {"data": (rng.random((n, 3 * 32 * 32)) * 255).astype(np.uint8), "fine_labels": rng.integers(0, 100, n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    results = tmp_path / "results"
    run_cli("sweep", "--preset", "bmvc2023-cifar100", "--data-root", tmp_path / "cifar", "--results", results, "--no-progress",
            *STAND_IN, "--set", "volumetric.architectures=[efficientnet_b0]",
            "--set", "volumetric.syllabi=[{metric: entropy, label: H}]", "--set", "attacks.0.sizes=[8]", "--set", "defenses=[]")
    df = cells(results)
    assert set(df["model"]) == {"efficientnet_b0"} and set(df["method"]) == {"undefended", "volumized-h"}
    assert set(df["dataset"]) == {"cifar100"}
    r = run_cli("table", "bmvc2023-2-bottom", "--preset", "bmvc2023-cifar100", "--results", results, "--format", "markdown")
    assert "H/Ours (efficientnet_b0)" in r.stdout and "80.50" in r.stdout


@pytest.mark.slow
def test_imagenet_preset_on_a_synthetic_image_folder(tmp_path):
    root = make_image_folder(tmp_path / "imagenet", per_class=3, size=64)
    results = tmp_path / "results"
    run_cli("sweep", "--preset", "bmvc2023-imagenet", "--data-root", root, "--results", results, "--no-progress", *STAND_IN,
            "--set", "model.weights=null", "--set", "data.image_size=64", "--set", "volumetric.architectures=[resnet50]",
            "--set", "volumetric.syllabi=[{metric: psnr, label: PSNR}]", "--set", "attacks.0.sizes=[16]",
            "--set", "defenses=[]")
    df = cells(results)
    assert set(df["method"]) == {"undefended", "volumized-psnr"} and (df["image_size"] == 64).all()


@pytest.mark.parametrize("what, args, message", [
    ("unknown metric", ["--set", "volumetric.syllabi=[{metric: sharpness}]"], "metric must be one of"),
    ("patch does not divide", ["--set", "volumetric.volumize.patch=12"], "does not divide"),
    ("N outside its range", ["--set", "evasion.0.params.pixels=513"], "1..512"),
    ("N zero", ["--set", "evasion.0.params.pixels=0"], "pixels must be an integer >= 1"),
    ("patch under 5 %", ["--set", "attacks.0.sizes=[6]"], "5-25 %"),
    ("targeted patch", ["--set", "attacks.0.target=3"], "untargeted"),
    ("even depth pool", ["--set", "volumetric.volumize.depth_pool=2"], "odd"),
    ("unknown aggregation", ["--set", "volumetric.volumize.aggregation=max"], "aggregation must be one of"),
])
def test_bad_parameters_one_line_exit_2_nothing_written(tmp_path, what, args, message):
    results = tmp_path / "results"
    r = run_cli("sweep", "--preset", "demo-bmvc-fmnist", "--results", results, "--no-progress", *args, check=False)
    assert r.returncode == 2, what
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not results.exists()


def test_list_models_prints_our_parameter_increase_beside_the_papers():
    r = run_cli("list", "volumetric")
    for arch in ("vgg16", "resnet50", "inception_v3", "efficientnet_b0"):
        assert arch in r.stdout
    assert "20,663,968" in r.stdout and "29,420,928" in r.stdout  # paper vs ours (VGG16, depth kernel 3)
