"""BMVC 2023 Table 2 and Figs. 2/3 from synthetic cells (no training): two presets (CIFAR-10 and
ImageNet), each with two architectures — small_vgg standing in for the paper's VGG16 and
inception_v3 as itself — so every published number has exactly one place it may stand."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from patchbench.papers import get_paper
from patchbench.papers.bmvc2023.cells import DATASETS, PAPER_ARCHS, REFERENCE, method_label
from patchbench.papers.bmvc2023.experiment import VolumetricSection
from patchbench.papers.bmvc2023.tables import TABLES
from patchbench.table import TableContext

PRESETS = {"bmvc2023-cifar10": "cifar10", "bmvc2023-imagenet": "imagenet"}
PAPER_MODELS = {"small_vgg": "vgg16", "inception_v3": "inception_v3"}
SYLLABI = ("volumized-mi", "volumized-psnr")


def _cell(preset, arch, method, condition="clean", *, attack=None, params=None, patch_px=None, source=None,
          defense="none", lam=None, kept=7):
    """One stored cell of 10 images: 8 correct (clean) or ``kept`` of the 10 clean-correct kept."""
    i = _cell.count = getattr(_cell, "count", 0) + 1
    return {"preset": preset, "dataset": PRESETS[preset], "model": arch, "model_id": f"{preset}-{arch}-{method}",
            "method": method, "condition": condition, "attack": attack, "attack_params": json.dumps(params or {}),
            "patch_px": patch_px, "patch_source": source, "defense": defense, "lam": lam, "n": 10,
            "correct": 8 if condition == "clean" else kept, "n_clean_correct": None if condition == "clean" else 10,
            "kept_correct": None if condition == "clean" else kept, "image_size": 32, "eval_n": 10,
            "created": f"2026-01-01T00:00:{i:05d}", "run_id": f"r{i}"}


def synthetic_cells(pixel_attacks=(("npixel", {"pixels": 1}),)) -> pd.DataFrame:
    rows = []
    for preset in PRESETS:
        for arch in PAPER_MODELS:
            for method in ("undefended",) + SYLLABI:
                rows.append(_cell(preset, arch, method))
                for attack, params in pixel_attacks:
                    rows.append(_cell(preset, arch, method, "attacked", attack=attack, params=params, kept=6))
                sources = ("self",) if method == "undefended" else ("undefended", "self")
                for source in sources:
                    rows.append(_cell(preset, arch, method, "attacked", attack="adversarial_patch", patch_px=8, source=source,
                                      kept=9 if source == "self" else 8))
            for defense, lam in (("lgs", 2.3), ("dw", None)):
                rows.append(_cell(preset, arch, "undefended", "attacked", attack="adversarial_patch", patch_px=8, source="self",
                                  defense=defense, lam=lam, kept=7))
    return pd.DataFrame(rows)


def context(preset: str) -> TableContext:
    def sections(name):
        return {"volumetric": VolumetricSection(paper_models=PAPER_MODELS)} if name in PRESETS else {}

    return TableContext(preset, sections(preset), get_paper("bmvc2023").reference, sections)


def build(name: str, preset: str, cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    t = TABLES[name]
    return t.build(t, cells, context(preset))


def row(table: pd.DataFrame, label: str) -> pd.Series:
    hits = table[table["Method"] == label]
    assert len(hits) == 1, (label, list(table["Method"]))
    return hits.iloc[0]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_bottom_pairs_a_paper_number_only_with_its_architecture_and_dataset(preset):
    """Built for either paper preset, the table shows both datasets. Every published α stands once:
    in its dataset's column, in the row of the paper's method on the paper's architecture (ours
    mapped to it, or the paper's own row when none of ours is)."""
    table, caption = build("bmvc2023-2-bottom", preset, synthetic_cells())
    assert [c for c in table.columns if c.startswith("CIFAR10 ")] == \
        ["CIFAR10 α ours", "CIFAR10 α ours, white-box", "CIFAR10 α paper", "CIFAR10 Δ"]
    # the paper's order; CIFAR-100, which no preset here ran, keeps the paper's column only
    assert [c for c in table.columns if c.startswith(("CIFAR100 ", "ImageNet "))] == \
        ["CIFAR100 α paper", "ImageNet α ours", "ImageNet α ours, white-box", "ImageNet α paper", "ImageNet Δ"]
    assert list(table.columns).index("CIFAR100 α paper") == list(table.columns).index("CIFAR10 Δ") + 1
    dw_vgg, dw_inc = row(table, "DW on undefended (small_vgg ≈ paper's VGG)"), row(table, "DW on undefended (inception_v3 = paper's Inception)")
    assert (dw_vgg["ImageNet α paper"], dw_inc["ImageNet α paper"]) == ("65.20", "66.20")
    assert dw_vgg["CIFAR10 α paper"] == dw_inc["CIFAR10 α paper"] == "-"
    assert dw_vgg["ImageNet α ours"].startswith("70.00 [") and dw_inc["CIFAR10 α ours"].startswith("70.00 [")
    assert dw_inc["ImageNet Δ"] == "+3.80" and dw_vgg["ImageNet Δ"] == "-"  # Δ only for the paper's own net
    psnr = row(table, "PSNR/Ours (inception_v3 = paper's Inception)")
    assert (psnr["CIFAR10 α paper"], psnr["ImageNet α paper"], psnr["CIFAR100 α paper"]) == ("96.12", "83.20", "94.30")
    assert psnr["CIFAR10 α ours"].startswith("80.00 [") and psnr["CIFAR10 α ours, white-box"].startswith("90.00 [")
    assert psnr["CIFAR10 Δ"] == "-16.12"
    assert row(table, "PSNR/Ours (small_vgg ≈ paper's VGG)")["CIFAR10 α paper"] == "-"  # the paper's PSNR is Inception's
    assert row(table, "Undefended (small_vgg ≈ paper's VGG)")["CIFAR10 α ours"].startswith("90.00 [")  # f's own patches
    assert row(table, "LGS (λ=2.3) on undefended (small_vgg ≈ paper's VGG)")["CIFAR10 α paper"] == "-"  # LGS: no architecture
    for label in ("DW (VGG)", "DW (Inception)", "PSNR/Ours (Inception)"):  # taken by rows of ours
        assert not table["Method"].str.startswith(label).any(), label
    ref = get_paper("bmvc2023").reference(REFERENCE)
    for r in ref[ref["table"] == "2-bottom"].itertuples():
        where = [(m, c) for c in table.columns if c.endswith("α paper") for m in table.loc[table[c] == f"{r.value:.2f}", "Method"]]
        assert len(where) == 1, (r.method, r.model, r.dataset, where)
        label, column = where[0]
        assert column == f"{DATASETS[r.dataset]} α paper"
        assert label.startswith(method_label(r.method))
        arch = f"paper's {PAPER_ARCHS[r.model]})" if isinstance(r.model, str) else None
        if arch and label.endswith(arch):  # a row of ours: its net maps to the paper's
            continue
        ours = ("volumized-mi", "volumized-psnr", "lgs", "dw")
        assert label.endswith("reported in the paper, not run" if r.method not in ours else
                              "not run on this architecture" if arch else "reported in the paper"), label
        assert (f"({PAPER_ARCHS[r.model]})" if arch else "(architecture not stated)") in label
    assert "bmvc2023-cifar10" in caption and "bmvc2023-imagenet" in caption


def test_bottom_of_a_preset_outside_the_paper_presets_shows_that_preset_alone():
    cells = synthetic_cells()
    cells.loc[cells["preset"] == "bmvc2023-cifar10", "preset"] = "my-cifar10"
    table, _ = build("bmvc2023-2-bottom", "my-cifar10", cells)
    assert not any(c.startswith("ImageNet α ours") for c in table.columns) and "ImageNet α paper" in table.columns
    # no paper_models for this preset: no row of ours takes a published number, each stays in the paper's own row
    assert (table.loc[~table["Method"].str.contains("reported in the paper"), [c for c in table.columns if "paper" in c]] == "-").all().all()
    assert row(table, "DW (VGG): reported in the paper, not run on this architecture")["ImageNet α paper"] == "65.20"


def test_bottom_shows_the_share_of_pixels_a_defense_masked():
    """Cells that measured a mask (``masked_pct``) give the defense's row a "masked %" column per
    dataset, weighted by the cells' images; DW masking nothing reads so; rows without a mask read
    "-"; the caption says what the column is. Cells without the column (above) show none."""
    cells = synthetic_cells()
    cells["masked_pct"] = None
    dw = cells["defense"] == "dw"
    imagenet = cells["preset"] == "bmvc2023-imagenet"
    cells.loc[dw & ~imagenet, "masked_pct"] = 0.0  # CIFAR-10: DW masked nothing
    vgg = cells.index[dw & imagenet & (cells["model"] == "small_vgg")][0]
    extra = {**cells.loc[vgg].to_dict(), "patch_px": 4, "n": 30, "run_id": "extra", "masked_pct": 2.0}
    cells.loc[vgg, "masked_pct"] = 6.0
    cells = pd.concat([cells, pd.DataFrame([extra])], ignore_index=True)
    table, caption = build("bmvc2023-2-bottom", "bmvc2023-cifar10", cells)
    assert [c for c in table.columns if c.startswith("CIFAR10 ")] == \
        ["CIFAR10 α ours", "CIFAR10 α ours, white-box", "CIFAR10 masked %", "CIFAR10 α paper", "CIFAR10 Δ"]
    dw_vgg = row(table, "DW on undefended (small_vgg ≈ paper's VGG)")
    assert dw_vgg["CIFAR10 masked %"] == "0 (nothing masked)"
    assert dw_vgg["ImageNet masked %"] == "3.00"  # (6 · 10 + 2 · 30) / 40 images
    assert row(table, "DW on undefended (inception_v3 = paper's Inception)")["ImageNet masked %"] == "-"  # not measured
    assert row(table, "LGS (λ=2.3) on undefended (small_vgg ≈ paper's VGG)")["CIFAR10 masked %"] == "-"
    assert row(table, "Undefended (small_vgg ≈ paper's VGG)")["CIFAR10 masked %"] == "-"
    assert "masked %: the share of the image's pixels a defense's mask covered" in caption
    assert "masked %" not in build("bmvc2023-2-bottom", "bmvc2023-cifar10", synthetic_cells())[1]


@pytest.mark.parametrize("attacks, first", [
    ((("npixel", {"pixels": 1}),), "1-pixel, DE"),
    ((("npixel", {"pixels": 4}), ("local_search", {"rounds": 3}), ("single_pixel", {"max_pixels": 10})), "1-pixel, Foolbox single-pixel"),
])
def test_top_puts_the_paper_beside_its_architecture_and_the_papers_attack_first(attacks, first):
    table, caption = build("bmvc2023-2-top", "bmvc2023-cifar10", synthetic_cells(attacks))
    cols = list(table.columns)
    vgg = cols.index("Acc_clean ours (small_vgg ≈ paper's VGG)")
    assert cols[vgg + 1] == "Acc_clean paper (VGG)"
    assert cols[vgg + 2] == f"Acc_attack ({first}) ours (small_vgg ≈ paper's VGG)" and cols[vgg + 3] == "Acc_attack paper (VGG)"
    attack_cols = [c for c in cols if c.startswith("Acc_attack (") and c.endswith("(inception_v3 = paper's Inception)")]
    assert len(attack_cols) == len(attacks) and attack_cols[0].startswith(f"Acc_attack ({first})")
    assert cols[-2:] == ["Acc_clean paper (Effn)", "Acc_attack paper (Effn)"]  # no net of ours stands for EfficientNet
    mi = row(table, "MI/Ours")
    assert (mi["Acc_clean paper (VGG)"], mi["Acc_attack paper (Inception)"], mi["Acc_attack paper (Effn)"]) == ("99.00", "96.12", "91.30")
    assert mi[f"Acc_attack ({first}) ours (small_vgg ≈ paper's VGG)"].startswith("60.00 [")
    assert row(table, "PSD: reported in the paper, not run")["Acc_clean paper (VGG)"] == "99.53"
    assert "Foolbox's N-pixel attacks" in caption


def test_figures_draw_a_row_of_panels_per_architecture(tmp_path):
    from PIL import Image

    from patchbench.papers.bmvc2023 import figures

    cells = synthetic_cells()
    models = tmp_path / "artifacts" / "models"
    models.mkdir(parents=True)
    for mid in set(cells.loc[cells["preset"] == "bmvc2023-cifar10", "model_id"]):
        history = [{"epoch": e, "Lc": 1.0 / (e + 1), "val_defense_success": 0.5} for e in range(3)]
        (models / f"{mid}.json").write_text(json.dumps({"model_id": mid, "history": history}))
    cells.attrs["results"] = tmp_path
    hist = figures.histories(cells, "bmvc2023-cifar10")
    assert list(hist)[:3] == [("small_vgg", "undefended"), ("small_vgg", "volumized-mi"), ("small_vgg", "volumized-psnr")]
    assert {a for a, _ in hist} == {"small_vgg", "inception_v3"}  # both architectures, not one history per method
    data = figures.robustness_data(cells, "bmvc2023-cifar10")
    assert set(data["arch"]) == {"small_vgg", "inception_v3"}
    assert data.loc[(data["kind"] == "npixel") & (data["method"] == "undefended"), "delta"].round(6).eq(-20).all()
    sizes = []
    for draw, name in ((figures.training_curves, "fig2.png"), (figures.robustness, "fig3.png")):
        with Image.open(draw(cells, "bmvc2023-cifar10", tmp_path / name, PAPER_MODELS)) as im:
            sizes.append(im.size)
    one = cells[cells["model"] == "small_vgg"]
    one.attrs["results"] = tmp_path
    with Image.open(figures.robustness(one, "bmvc2023-cifar10", tmp_path / "one.png")) as im:
        assert im.size[1] * 1.5 < sizes[1][1]  # two rows of panels are twice as tall as one
