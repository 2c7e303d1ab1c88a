"""TOMM 2022 Table 6/7 through the CLI: the demo at tiny scale (rerun reuses everything) and the
paper presets' code paths on stand-ins (MNIST IDX files and CIFAR-10 pickles of synthetic
images, a synthetic ImageFolder for ImageNet with a random-init ResNet50, one step)."""


import pandas as pd
import pytest

from conftest import cells, make_image_folder, needs_fmnist, run_cli, write_cifar, write_idx

TRAININGS = ["raw", "madry", "madry+aad", "alp", "alp+aad"]


def tiny_sets(n_train=200, batch=50, eval_n=60, steps=(2, 3)):
    """One epoch on a few images, short attacks: the code path, not the numbers."""
    s = ["--set", f"model.train.train_n={n_train}", "--set", "model.train.epochs=1",
         "--set", f"model.train.batch_size={batch}", "--set", "model.train.attack_steps=2",
         "--set", f"data.eval_n={eval_n}", "--set", f"data.batch_size={eval_n}"]
    s += ["--set", f"evasion=[{{name: fgsm, eps: 0.1}}, {{name: pgd, eps: 0.1, steps: {steps[0]}}}, "
                   f"{{name: pgd, eps: 0.1, steps: {steps[1]}}}, {{name: cw, eps: 0.1, steps: {steps[0]}}}]"]
    return s


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    results = tmp_path_factory.mktemp("tomm") / "results"
    out = results / "reports"
    run_cli("reproduce", "tomm2022", "--preset-scale", "demo", "--results", results, "--out", out, "--no-progress", *tiny_sets())
    return results, out


@needs_fmnist
@pytest.mark.slow
def test_demo_table6_rows_columns_and_cells(demo):
    results, out = demo
    df = cells(results)
    assert set(df["training"]) == set(TRAININGS) and set(df["preset"]) == {"demo-tomm-fmnist"}
    assert len(df) == 5 * (1 + 4) and df["model_id"].nunique() == 5  # five models, clean + four attacks each
    assert set(df["attack_label"].dropna()) == {"FGSM", "PGD2", "PGD3", "CW2"}
    assert all('"eps": 0.1' in p for p in df["attack_params"].dropna())
    text = (out / "tomm2022-6.md").read_text()
    for label in ("RAW", "Madry", "Madry+AAD", "ALP", "ALP+AAD", "paper (mnist)", "FGSM", "PGD2", "CW2"):
        assert label in text
    assert "99.18" in text  # the paper's MNIST RAW clean accuracy, beside ours
    header = next(line for line in text.splitlines() if line.startswith("| Training"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[2:] == ["Clean", "FGSM", "PGD2", "PGD3", "CW2"]  # the paper's column order


@needs_fmnist
@pytest.mark.slow
def test_demo_rerun_reuses_everything(demo, tmp_path):
    results, out = demo
    before = {f.name: f.stat().st_mtime_ns for f in (results / "cells").iterdir()}
    models = sorted(p.name for p in (results / "artifacts/models").glob("*.pt"))
    run_cli("reproduce", "tomm2022", "--preset-scale", "demo", "--results", results, "--out", tmp_path, "--no-progress", *tiny_sets())
    assert {f.name: f.stat().st_mtime_ns for f in (results / "cells").iterdir()} == before
    assert sorted(p.name for p in (results / "artifacts/models").glob("*.pt")) == models
    assert not list((results / "artifacts/models").glob("*.ckpt"))  # finished trainings leave no resume state
    assert (tmp_path / "tomm2022-6.md").read_text() == (out / "tomm2022-6.md").read_text()
    r = run_cli("table", "tomm2022-6", "--results", results, "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(r.stdout))
    assert list(table["Training"].unique()) == ["RAW", "Madry", "Madry+AAD", "ALP", "ALP+AAD"]


@needs_fmnist
@pytest.mark.slow
def test_train_model_training_option_and_bad_attack_parameters(tmp_path):
    results = tmp_path / "r"
    r = run_cli("train-model", "--preset", "demo-tomm-fmnist", "--training", "madry", "--results", results, "--no-progress",
           "--set", "model.train.train_n=100", "--set", "model.train.epochs=1", "--set", "model.train.attack_steps=1")
    assert "test accuracy" in r.stdout
    meta = list((results / "artifacts/models").glob("*.json"))
    assert len(meta) == 1 and '"training": "madry"' in meta[0].read_text()
    for bad, what in ((["--training", "fgsm-train"], "training"), (["--set", "evasion.1.eps=-0.1"], "eps"),
                      (["--set", "evasion.1.steps=0"], "steps"), (["--set", "evasion.0.step_size=0.1"], None)):
        args = ["sweep" if bad[0] == "--set" else "train-model", "--preset", "demo-tomm-fmnist", "--results",
                tmp_path / "bad", "--no-progress", *bad]
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        if what:
            assert what in proc.stderr
        assert not (tmp_path / "bad" / "cells").exists()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tomm2022-mnist", "tomm2022-cifar10"])
def test_paper_presets_on_synthetic_stand_ins(preset, tmp_path):
    root = tmp_path / "data"
    if preset == "tomm2022-mnist":
        write_idx(root, "train", 120)
        write_idx(root, "test", 40, seed=1)
    else:
        write_cifar(root)
    results = tmp_path / "results"
    sets = tiny_sets(n_train=40, batch=20, eval_n=20, steps=(1, 2)) + ["--set", "trainings=[raw,madry+aad,alp+aad]"]
    run_cli("sweep", "--preset", preset, "--data-root", root, "--results", results, "--no-progress", *sets)
    df = cells(results)
    assert set(df["training"]) == {"raw", "madry+aad", "alp+aad"} and (df["n"] == 20).all()
    r = run_cli("table", "tomm2022-6", "--preset", preset, "--results", results, "--format", "markdown")
    assert "Δ" in r.stdout  # same dataset and model as the paper: Δ rows


@pytest.mark.slow
def test_imagenet_preset_on_stand_in_with_table7(tmp_path):
    """ResNet50 (weights=None stand-in) fine-tuned with Madry+AAD one step; Table 7's A3 attacks."""
    root = make_image_folder(tmp_path / "imagenet", per_class=2, size=64)
    results = tmp_path / "results"
    sets = ["--set", "model.weights=null", "--set", "data.image_size=64", "--set", "data.eval_n=0",
            "--set", "data.batch_size=4", "--set", "data.num_workers=0", "--set", "model.train.train_n=4",
            "--set", "model.train.batch_size=4", "--set", "model.train.epochs=1", "--set", "model.train.attack_steps=1",
            "--set", "trainings=[raw,madry+aad]",
            "--set", "evasion=[{name: fgsm, eps: 0.0627}, "
                     "{name: iter-stepll, eps: 0.0157, steps: 1, column: T7 Iter-StepLL, trainings: [raw]}, "
                     "{name: iter-stepll+a3, eps: 0.0157, steps: 1, params: {sigma: 10}, column: T7 Iter-StepLL+A3, trainings: [raw]}, "
                     "{name: pgd, eps: 0.0157, steps: 1, column: T7 PGD, trainings: [raw]}, "
                     "{name: pgd+a3, eps: 0.0157, steps: 1, params: {sigma: 10}, column: T7 PGD+A3, trainings: [raw]}]"]
    run_cli("sweep", "--preset", "tomm2022-imagenet", "--data-root", root, "--results", results, "--no-progress", *sets)
    df = cells(results)
    assert set(df["model"]) == {"resnet50"}
    assert len(df[df["training"] == "raw"]) == 1 + 5 and len(df[df["training"] == "madry+aad"]) == 1 + 1
    r7 = run_cli("table", "tomm2022-7", "--preset", "tomm2022-imagenet", "--results", results, "--format", "markdown")
    for col in ("T7 Iter-StepLL", "T7 Iter-StepLL+A3", "T7 PGD", "T7 PGD+A3", "13.6", "10.8"):
        assert col in r7.stdout
    r6 = run_cli("table", "tomm2022-6", "--preset", "tomm2022-imagenet", "--results", results, "--format", "markdown")
    assert "T7" not in r6.stdout and "75.6" in r6.stdout


def test_shared_trajectory_equals_separate_attacks():
    """PGD-10/20/40 from one fixed-step run equal three separate runs with the same seed."""
    import torch

    from patchbench.config import EvasionConfig
    from patchbench.grid import build_evasion, evasion_conditions
    from conftest import corner_model

    torch.manual_seed(0)
    model = corner_model(target=2, size=12)
    x, y = torch.rand(5, 1, 12, 12), torch.tensor([0, 1, 2, 0, 1])
    configs = [EvasionConfig("fgsm", 0.1)] + [EvasionConfig(n, 0.1, k, 0.02) for n in ("pgd", "cw") for k in (3, 5, 9)]
    conditions = evasion_conditions(configs, model, "raw", 12)
    assert [c.attack_config for c in conditions] == configs
    references = [build_evasion(cfg, model, 12) for cfg in configs]  # separate attacks, same seeds
    for _ in range(2):  # two batches: the cache must follow the batch, the random starts advance alike
        x = torch.rand(5, 1, 12, 12)
        for cond, ref in zip(conditions, references):
            out = cond.build(x, y)
            assert torch.equal(out, ref(x, y)), cond.attack_config
            assert (out - x).abs().max() <= 0.1 + 1e-6
