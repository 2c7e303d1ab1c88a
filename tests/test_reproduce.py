"""`patchbench reproduce icaart2022`: the demo at tiny scale (rerun reuses every cell) and the
paper presets' code paths on stand-ins (synthetic 400x400 ImageFolder, random-init VGG16 and
Inception-v3, 2 training steps)."""

import pandas as pd
import pytest
from PIL import Image

from conftest import cells, make_image_folder, needs_fmnist, run_cli

TINY = ["--set", "data.image_size=32", "--set", "data.eval_n=200", "--set", "data.batch_size=100",
        "--set", "data.ssim_n=50",
        "--set", "model.train.epochs=1", "--set", "model.train.train_n=2000", "--set", "model.train.batch_size=100",
        "--set", "attacks.0.sizes=[6]", "--set", "attacks.0.steps=10", "--set", "attacks.0.batch_size=32",
        "--set", "attacks.0.train_pool=400", "--set", "attacks.0.success_n=50",
        "--set", "attacks.1.sizes=[8]", "--set", "attacks.1.steps=10", "--set", "attacks.1.batch_size=32",
        "--set", "attacks.1.train_pool=400", "--set", "attacks.1.success_n=50",
        "--set", "attacks.0.seeds=[0,1]", "--set", "attacks.1.seeds=[0]", "--set", "attacks.1.restarts=2",
        "--set", "attacks.0.restarts=1", "--set", "attacks.0.select_n=50", "--set", "attacks.1.select_n=50",
        "--set", "defenses.0.lambdas=[2.3,3.5]", "--set", "defenses.1.lambdas=[2.3,3.5]",
        "--set", "defenses.2.lambdas=[2.3,3.5]",
        "--set", "adaptive.steps=4", "--set", "adaptive.record_every=2", "--set", "adaptive.size=6"]

ICAART_TABLES = ["icaart2022-1", "icaart2022-2", "icaart2022-3", "icaart2022-4", "icaart2022-ssim"]


def check_reports(out, presets, adaptive_presets):
    for name in ICAART_TABLES:
        text = (out / f"{name}.md").read_text()
        assert "paper" in text and "ours" in text, name
    for p in presets:
        png = out / f"{p}-lambda-curve.png"
        with Image.open(png) as im:
            assert im.size[0] > 500
    for p in adaptive_presets:
        assert (out / f"{p}-adaptive.png").is_file()
        table = (out / f"{p}-adaptive.md").read_text()
        assert "LGS" in table and "SLGS" in table and "WLGS" in table


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("demo") / "results"
    out = results / "reports"
    run_cli("reproduce", "icaart2022", "--preset-scale", "demo", "--results", results, "--out", out, "--no-progress", *TINY)
    return results, out


@needs_fmnist
@pytest.mark.slow
def test_demo_reproduce_writes_every_table_and_figure(demo_run):
    results, out = demo_run
    check_reports(out, ["demo-fmnist", "demo-fmnist-inception"], ["demo-fmnist"])
    df = cells(results)
    assert set(df["preset"]) == {"demo-fmnist", "demo-fmnist-inception"}
    assert {"lavan", "adversarial_patch", "lavan-adaptive"} <= set(df["attack"])
    assert {"none", "lgs", "slgs", "wlgs"} == set(df["defense"])
    clean_defended = df[(df["condition"] == "clean") & (df["defense"] != "none")]
    assert clean_defended["ssim"].between(0, 1).all() and (clean_defended["ssim_n"] == 50).all()
    assert df.loc[df["condition"] == "attacked", "ssim"].isna().all()
    adaptive = df[df["attack"] == "lavan-adaptive"]
    assert set(adaptive["attack_through"]) == {"lgs", "slgs", "wlgs"}
    assert adaptive["attack_step"].notna().all()
    lavan = df[df["attack"] == "lavan"]
    assert set(lavan["attack_seed"]) == {0, 1}  # one cell per seed stays in the store
    t1 = (out / "icaart2022-1.md").read_text()
    assert " ± " in t1 and "mean over 2 patch seeds" in t1
    # Table 3 shows λ = 3.5 rows only, with the paper's numbers beside ours
    t3 = (out / "icaart2022-3.md").read_text()
    assert "Adversarial Patch 8px (paper 90px)" in t3 and "60.88" in t3 and "| 2.3 " not in t3
    assert "0.987" in (out / "icaart2022-ssim.md").read_text()


@needs_fmnist
@pytest.mark.slow
def test_demo_rerun_reuses_every_cell(demo_run, tmp_path):
    results, out = demo_run
    before = {f.name: f.stat().st_mtime_ns for f in (results / "cells").iterdir()}
    artifacts = sorted(p.name for p in (results / "artifacts").rglob("*.pt"))
    run_cli("reproduce", "icaart2022", "--preset-scale", "demo", "--results", results, "--out", tmp_path / "again",
           "--no-progress", *TINY)
    after = {f.name: f.stat().st_mtime_ns for f in (results / "cells").iterdir()}
    assert after == before
    assert sorted(p.name for p in (results / "artifacts").rglob("*.pt")) == artifacts
    for name in ICAART_TABLES:
        assert (tmp_path / "again" / f"{name}.md").read_text() == (out / f"{name}.md").read_text()


@needs_fmnist
@pytest.mark.slow
def test_table_and_plot_commands_on_stored_cells(demo_run, tmp_path):
    results, _ = demo_run
    r = run_cli("table", "icaart2022-4", "--results", results, "--format", "csv")
    df = pd.read_csv(pd.io.common.StringIO(r.stdout))
    assert list(df["Defense"]) == ["No defense", "LGS", "SLGS", "WLGS"]
    assert df.filter(like="paper").notna().all().all()
    png = tmp_path / "curve.png"
    run_cli("plot", "lambda-curve", "--preset", "demo-fmnist", "--results", results, "--out", png)
    assert png.stat().st_size > 10_000
    bad = run_cli("plot", "lambda-curve", "--preset", "demo-fmnist", "--results", results, "--param", "patch_px=99",
             "--out", tmp_path / "x.png", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_icaart_paper_presets_on_stand_ins(tmp_path):
    """Both ICAART presets through `reproduce --preset-scale paper`: synthetic ImageFolder of
    400x400 JPEGs (resized to 80 px for CPU speed), random-init VGG16 / Inception-v3, 2 steps."""
    root = make_image_folder(tmp_path / "imagenet", per_class=2, size=400)
    results, out = tmp_path / "results", tmp_path / "reports"
    sets = ["--set", "model.weights=null", "--set", "data.image_size=80", "--set", "data.eval_n=0",
            "--set", "data.batch_size=4", "--set", "data.num_workers=0", "--set", "data.ssim_n=4",
            "--set", "attacks.0.sizes=[10]", "--set", "attacks.1.sizes=[16]", "--set", "attacks.1.target=1"]
    for i in (0, 1):
        sets += ["--set", f"attacks.{i}.steps=2", "--set", f"attacks.{i}.batch_size=2", "--set", f"attacks.{i}.margin=2",
                 "--set", f"attacks.{i}.success_n=2", "--set", f"attacks.{i}.lr_milestones=[1]"]
    for i in (0, 1, 2):
        sets += ["--set", f"defenses.{i}.lambdas=[2.3,3.5]"]
    sets += ["--set", "adaptive.size=10", "--set", "adaptive.steps=2", "--set", "adaptive.record_every=1"]
    run_cli("reproduce", "icaart2022", "--preset-scale", "paper", "--data-root", root, "--results", results,
       "--out", out, "--no-progress", *sets)
    df = cells(results)
    assert set(df["model"]) == {"vgg16", "inception_v3"} and set(df["dataset"]) == {"imagenet"}
    assert {"lavan", "adversarial_patch", "lavan-adaptive"} <= set(df["attack"])
    saliency = df[df["defense"].isin(["lgs", "slgs", "wlgs"])]
    assert all('"space": "normalized"' in p and '"window": 15' in p for p in saliency["defense_params"])
    assert all('"erosions": 2' in p for p in df.loc[df["defense"] == "slgs", "defense_params"])
    check_reports(out, ["icaart2022-vgg16", "icaart2022-inception_v3"], ["icaart2022-vgg16", "icaart2022-inception_v3"])
    t1 = (out / "icaart2022-1.md").read_text()
    assert "Δ" in t1  # same dataset and model as the paper: the Δ column is shown
