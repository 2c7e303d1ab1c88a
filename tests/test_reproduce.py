"""`patchbench reproduce icaart2022`: the demo at tiny scale, its tables, figures and stored cells
(its rerun and the paper presets on stand-ins are in test_papers.py, with every other paper's)."""

import pandas as pd
import pytest

from conftest import cells, check_icaart_reports, demo_group, needs_fmnist, run_cli


@pytest.fixture
def demo_run(paper_demo):
    return paper_demo("icaart2022")


@needs_fmnist
@pytest.mark.slow
@demo_group("icaart2022")
def test_demo_reproduce_writes_every_table_and_figure(demo_run):
    results, out = demo_run
    check_icaart_reports(out, ["demo-fmnist", "demo-fmnist-inception"], ["demo-fmnist"])
    df = cells(results)
    assert set(df["preset"].str.split("+").str[0]) == {"demo-fmnist", "demo-fmnist-inception"}
    assert set(df["preset"]) - {"demo-fmnist", "demo-fmnist-inception"} == {  # the cells the patch-optimality sections add
        "demo-fmnist+patch-optimality", "demo-fmnist-inception+patch-optimality"}
    assert {"lavan", "adversarial_patch", "lavan-adaptive", "patch_rs"} <= set(df["attack"])
    table = (out / "patch-optimality.md").read_text()  # both models' attacks ranked, the mean over the 8 model × defense rows
    assert "mini_inception" in table and "small_vgg" in table and "mean over 8" in table and "Patch-RS" in table
    assert {"none", "lgs", "slgs", "wlgs", "patchcleanser"} == set(df["defense"])  # + demo-fmnist's certified baseline
    pc = df[df["defense"] == "patchcleanser"]  # certified.n = 50: the first 50 of the 200 evaluation images
    assert (pc["eval_n"] == 50).all() and (pc["n"] == 50).all() and (df.loc[df["defense"] == "lgs", "n"] == 200).all()
    clean_defended = df[(df["condition"] == "clean") & df["defense"].isin(["lgs", "slgs", "wlgs"])]
    assert clean_defended["ssim"].between(0, 1).all() and (clean_defended["ssim_n"] == 50).all()
    assert df.loc[df["condition"] == "attacked", "ssim"].isna().all()
    adaptive = df[df["attack"] == "lavan-adaptive"]
    assert set(adaptive["attack_through"]) == {"lgs", "slgs", "wlgs", "patchcleanser"}
    assert adaptive["attack_step"].notna().all()
    lavan = df[(df["attack"] == "lavan") & (df["defense"] != "patchcleanser")]
    assert set(lavan["attack_seed"]) == {0, 1}  # one cell per seed stays in the store
    t1 = (out / "icaart2022-1.md").read_text()
    assert " ± " in t1 and "mean over 2 patch seeds" in t1
    # Table 3 shows λ = 3.5 rows only, with the paper's numbers beside ours
    t3 = (out / "icaart2022-3.md").read_text()
    assert "Adversarial Patch 8px = 6.2 % (paper 90px = 5.1 %)" in t3 and "60.88" in t3 and "| 2.3 " not in t3
    assert "0.987" in (out / "icaart2022-ssim.md").read_text()


@needs_fmnist
@pytest.mark.slow
@demo_group("icaart2022")
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
