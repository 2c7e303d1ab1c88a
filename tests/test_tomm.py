"""TOMM 2022 Table 6 through the CLI: the demo at tiny scale, the training option and bad attack
parameters, and PGD/CW-k sharing one trajectory (the demo's rerun and the paper presets on
stand-ins are in test_papers.py, with every other paper's)."""


import pandas as pd
import pytest

from conftest import cells, demo_group, needs_fmnist, run_cli

TRAININGS = ["raw", "madry", "madry+aad", "alp", "alp+aad"]


@pytest.fixture
def demo(paper_demo):
    return paper_demo("tomm2022")


@needs_fmnist
@pytest.mark.slow
@demo_group("tomm2022")
def test_demo_table6_rows_columns_and_cells(demo):
    results, out = demo
    df = cells(results)
    assert set(df["training"]) == set(TRAININGS) and set(df["preset"]) == {"demo-tomm-fmnist"}
    # seven models (Madry and Madry+AAD with training seeds 0 and 1), clean + four attacks each
    assert len(df) == 7 * (1 + 4) and df["model_id"].nunique() == 7
    seeds = df.groupby("training")["train_seed"].apply(lambda s: sorted(set(s)))
    assert seeds.to_dict() == {"raw": [0], "madry": [0, 1], "madry+aad": [0, 1], "alp": [0], "alp+aad": [0]}
    assert df.groupby(["training", "train_seed"])["model_id"].nunique().eq(1).all()
    assert set(df["attack_label"].dropna()) == {"FGSM", "PGD2", "PGD3", "CW2"}
    assert all('"eps": 0.1' in p for p in df["attack_params"].dropna())
    text = (out / "tomm2022-6.md").read_text()
    for label in ("RAW", "Madry", "Madry+AAD", "ALP", "ALP+AAD", "paper (mnist)", "FGSM", "PGD2", "CW2"):
        assert label in text
    assert "99.18" in text  # the paper's MNIST RAW clean accuracy, beside ours
    assert "Several training seeds: RAW 0; Madry 0, 1; Madry+AAD 0, 1; ALP 0; ALP+AAD 0" in text
    # a seeded row pools its seeds' counts: Madry's clean accuracy is (correct_0 + correct_1) / (n_0 + n_1)
    clean = df[(df["training"] == "madry") & (df["condition"] == "clean")]
    pooled = f"{100 * clean['correct'].sum() / clean['n'].sum():.2f} ["
    assert next(line for line in text.splitlines() if line.startswith("| Madry ") and "ours" in line).split("|")[3].strip().startswith(pooled)
    header = next(line for line in text.splitlines() if line.startswith("| Training"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[2:] == ["Clean", "FGSM", "PGD2", "PGD3", "CW2"]  # the paper's column order
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


def test_shared_trajectory_equals_separate_attacks():
    """PGD-10/20/40 from one fixed-step run equal three separate runs with the same seed."""
    import torch

    from patchbench.config import EvasionConfig
    from patchbench.evaluation.grid import build_evasion, evasion_conditions
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
