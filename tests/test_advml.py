"""AdvML 2019 (localized adversarial training) end to end: the lat objective's localized PGD, the
demo reproduce at tiny scale (Fig. 2 table with the paper beside ours and the relative changes),
bad region specs, the background attack (the demo's rerun and the MNIST and CIFAR-10 presets on
stand-ins are in test_papers.py, with every other paper's)."""

from __future__ import annotations

import pytest
import torch

from conftest import cells, demo_group, needs_fmnist, quadrant_data, run_cli

def test_lat_trains_on_images_changed_only_outside_the_kept_box():
    """Algorithm 1: the training attack of ``lat`` changes no pixel of the centred box."""
    from patchbench.config import TrainConfig
    from patchbench.training.objectives import build_objective

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4))
    cfg = TrainConfig(training="lat", eps=0.3, attack_steps=3, lat_region="background", lat_keep_box=0.5)
    attack = build_objective("lat").make_attack(net, cfg)
    x, y = quadrant_data(16)
    adv = attack(x, y)
    assert torch.equal(adv[:, :, 3:9, 3:9], x[:, :, 3:9, 3:9])  # the middle 6x6 of 12x12 is kept
    assert (adv != x).any() and (adv - x).abs().max() <= 0.3 + 1e-6
    madry = build_objective("madry").make_attack(net, TrainConfig(training="madry", eps=0.3, attack_steps=3))
    assert (madry(x, y)[:, :, 3:9, 3:9] != x[:, :, 3:9, 3:9]).any()  # standard training changes them


@pytest.fixture
def demo(paper_demo):
    return paper_demo("advml2019")


@needs_fmnist
@pytest.mark.slow
@demo_group("advml2019")
def test_demo_fig2_table_with_losses_accuracies_and_relative_changes(demo):
    results, out = demo
    df = cells(results)
    assert set(df["training"]) == {"raw", "madry", "lat"} and len(df) == 3 * 3
    assert df["loss"].gt(0).all() and df["loss_std"].ge(0).all()
    text = (out / "advml2019-fig2.md").read_text()
    for s in ('"Natural" model', '"Standard" model', '"Background" model', "Natural images loss ours", "41.4",
              "Background attack loss paper", "61.8", "Relative loss change, background vs natural model, natural inputs",
              "-4.35 %", "Standard attack acc ours"):
        assert s in text, s


@pytest.mark.parametrize("args, message", [
    (["--set", "model.train.lat_keep_box=1.5"], "lat_keep_box"),
    (["--set", "evasion.1.params.keep_box=1.0"], "keep_box"),
    (["--set", "evasion.1.params.region=corners"], "region must be one of"),
    (["--set", "model.train.lat_region=centre"], "lat_region"),
])
def test_bad_region_specs_exit_2_nothing_written(tmp_path, args, message):
    results = tmp_path / "results"
    r = run_cli("sweep", "--preset", "demo-advml-fmnist", "--results", results, "--no-progress", *args, check=False)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not results.exists()


def write_boxes(tmp_path, rows, size=48):
    """A folder of random RGB images and a boxes CSV (file,label,x0,y0,x1,y1)."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in {r[0] for r in rows if not r[0].startswith("missing")}:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / name)
    csv = tmp_path / "boxes.csv"
    csv.write_text("file,label,x0,y0,x1,y1\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return folder, csv


@pytest.mark.slow
def test_background_attack_on_a_random_weight_inception_keeps_every_box(tmp_path):
    """AdvML Sec. 3 / Tables 1-2 on a stand-in: Inception-v3 with random weights, 3 images at 80 px."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rows = [("a.png", 1, 10, 12, 30, 40), ("b.png", 7, 0, 0, 24, 48), ("c.png", 3, 20, 20, 28, 28)]
    folder, csv = write_boxes(tmp_path, rows)
    out = tmp_path / "out"
    r = run_cli("background-attack", "--images", folder, "--boxes", csv, "--out", out, "--model", "inception_v3",
                "--weights", "none", "--image-size", 96, "--eps", 0.1, "--steps", 2, "--device", "cpu")
    assert "background attack on 3 image(s)" in r.stdout
    table = pd.read_csv(out / "background-attack.csv")
    assert len(table) == 6 and set(table["input"]) == {"natural", "adversarial"}
    for col in ("correct guess", "in top 5", "in top 10", "confidence in correct class", "pixels altered (%)"):
        assert col in table
    assert "| file" in (out / "background-attack.md").read_text()
    # the box, scaled from 48 to 96 px, is unchanged in every written image (within PNG rounding of equal values)
    from patchbench.imagefiles.background import load_batch, read_boxes

    boxes = read_boxes(folder, csv, 1000)
    x, _, allowed = load_batch(boxes, 96, 3)
    for b, xi, ai in zip(boxes, x, allowed):
        adv = torch.from_numpy(np.array(Image.open(out / f"{b.file.stem}.png"))).permute(2, 0, 1).float() / 255
        kept = ai.expand_as(xi) == 0
        assert (adv[kept] - (xi[kept] * 255).round() / 255).abs().max() < 1e-6
        assert (adv[~kept] - (xi[~kept] * 255).round() / 255).abs().max() > 0  # the background moved
    assert table.loc[table["input"] == "adversarial", "pixels altered (%)"].between(0, 100).all()


@pytest.mark.parametrize("rows, message", [
    ([("a.png", 1, 10, 10, 60, 20)], "does not lie inside"),
    ([("a.png", 1, 0, 0, 48, 48)], "covers the whole image"),
    ([("missing.png", 1, 0, 0, 10, 10)], "not found"),
    ([("a.png", "x", 0, 0, 10, 10)], "must be integers"),
    ([("a.png", 5000, 0, 0, 10, 10)], "label 5000 outside"),
])
def test_bad_boxes_exit_2_nothing_written(tmp_path, rows, message):
    folder, csv = write_boxes(tmp_path, rows if rows[0][0] != "missing.png" else rows + [("a.png", 1, 0, 0, 10, 10)])
    out = tmp_path / "out"
    r = run_cli("background-attack", "--images", folder, "--boxes", csv, "--out", out, "--weights", "none",
                "--device", "cpu", check=False)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_malformed_boxes_csv(tmp_path):
    folder, csv = write_boxes(tmp_path, [("a.png", 1, 0, 0, 10, 10)])
    csv.write_text("file;label\na.png;1\n")
    r = run_cli("background-attack", "--images", folder, "--boxes", csv, "--out", tmp_path / "out", "--weights", "none",
                check=False)
    assert r.returncode == 2 and "needs the columns" in r.stderr
    assert not (tmp_path / "out").exists()


def test_fig2_reads_any_localized_region_as_the_background_attack():
    """A background attack whose region is the object mask (the demo's) or a kept box counts as the background
    PGD; a PGD without a region (or region all) as the standard one."""
    import json

    import pandas as pd

    from patchbench.papers.advml2019.tables import _input_of

    def row(condition, **params):
        return {"condition": condition, "attack_params": json.dumps({"eps": 0.1, **params}) if params or condition != "clean" else None}

    assert _input_of(row("clean")) == "natural"
    assert _input_of(row("attacked")) == "standard_pgd"
    assert _input_of(row("attacked", region="all")) == "standard_pgd"
    assert _input_of(row("attacked", region="mask", mask_threshold=0.1)) == "background_pgd"
    assert _input_of(row("attacked", region="background", keep_box=0.5)) == "background_pgd"
    assert _input_of(pd.Series(row("attacked", region="mask"))) == "background_pgd"
