"""Patches as files (issue 35 item 1): the PNG that carries the exact patch, tensor files read with
weights_only, ``export-patch`` then ``evaluate --patch`` reproducing a stored cell exactly, and
placements — random per image and placement masks — for training and evaluation alike."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import cells, needs_fmnist, run_cli, tiny_preset
from patchbench.attacks.adversarial_patch import AdversarialPatch
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Patch
from patchbench.attacks.patch_files import load_patch_file
from patchbench.attacks.patch_png import CHUNK
from patchbench.attacks.placement import Placement, region_mask
from patchbench.config import AttackConfig
from patchbench.errors import PatchbenchError


def random_patch(channels=3, size=7, seed=0, mask=None) -> Patch:
    g = torch.Generator().manual_seed(seed)
    m = torch.ones(1, size, size) if mask is None else mask
    return Patch(torch.rand(channels, size, size, generator=g), m, {"attack": "lavan", "target": 2, "placement": "center"})


# ---- the PNG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_png_carries_the_exact_patch_and_shows_its_8bit_picture(channels, tmp_path):
    ring = torch.ones(1, 7, 7)
    ring[:, 2:5, 2:5] = 0  # a mask that is not all ones travels as alpha
    patch = random_patch(channels, mask=ring)
    (tmp_path / "p.png").write_bytes(patch.png())
    back = load_patch_file(tmp_path / "p.png")
    assert torch.equal(back.pixels, patch.pixels) and torch.equal(back.mask, patch.mask)  # float32, bit for bit
    assert back.content_id() == patch.content_id() and back.meta["target"] == 2 and back.placement.kind == "center"
    # the picture a person sees, read by Pillow: round(255 v) of every channel, the mask as alpha
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == ("LA" if channels == 1 else "RGBA")
        seen = np.asarray(im).reshape(7, 7, -1)
    expect = np.floor(patch.pixels.permute(1, 2, 0).numpy().astype(np.float64) * 255 + 0.5)
    assert np.array_equal(seen[..., :channels], expect) and np.array_equal(seen[..., -1], 255 * ring[0].numpy())
    # 8 bits would not do: most float32 values move (another patch id)
    assert not torch.equal(torch.from_numpy(expect / 255).permute(2, 0, 1).float(), patch.pixels)


def test_png_without_the_chunk_reads_its_pixels(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    p = load_patch_file(tmp_path / "a.png")
    assert torch.equal(p.pixels, torch.from_numpy(rgba[..., :3] / 255.0).permute(2, 0, 1).float())
    assert torch.equal(p.mask[0], torch.from_numpy((rgba[..., 3] >= 128).astype(np.float32)))
    grey16 = np.array([[0, 65535], [32768, 1]], dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g.png")  # 16-bit grey: v / 65535
    assert torch.allclose(load_patch_file(tmp_path / "g.png").pixels[0], torch.from_numpy(grey16 / 65535.0).float())


def test_png_whose_picture_was_edited_with_the_chunk_kept_is_refused(tmp_path):
    patch = random_patch()
    (tmp_path / "p.png").write_bytes(patch.png())
    with Image.open(tmp_path / "p.png") as im:
        chunk, arr = im.text[CHUNK], np.asarray(im).copy()
    arr[0, 0, 0] ^= 0x40
    info = PngInfo()
    info.add_itxt(CHUNK, chunk)
    Image.fromarray(arr).save(tmp_path / "edited.png", pnginfo=info)
    with pytest.raises(PatchbenchError, match="not the 8-bit rounding"):
        load_patch_file(tmp_path / "edited.png")
    with pytest.raises(PatchbenchError, match="square"):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "wide.png")
        load_patch_file(tmp_path / "wide.png")


def test_tensor_files_and_a_pickle_with_code_in_their_place(tmp_path):
    t = torch.rand(3, 5, 5)
    torch.save(t, tmp_path / "bare.pt")
    torch.save({"pixels": t, "mask": torch.ones(1, 5, 5)}, tmp_path / "ours.pth")
    torch.save(t[0], tmp_path / "grey.pt")
    assert torch.equal(load_patch_file(tmp_path / "bare.pt").pixels, t)
    assert torch.equal(load_patch_file(tmp_path / "ours.pth").pixels, t)
    assert load_patch_file(tmp_path / "grey.pt").pixels.shape == (1, 5, 5)
    torch.save(t * 2, tmp_path / "bright.pt")
    with pytest.raises(PatchbenchError, match=r"\[0, 1\]"):
        load_patch_file(tmp_path / "bright.pt")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump(Payload(), f, protocol=2)
    with pytest.raises(PatchbenchError, match="weights_only"):
        load_patch_file(tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(PatchbenchError, match="expected a .png or a tensor file"):
        (tmp_path / "p.jpg").write_bytes(b"x")
        load_patch_file(tmp_path / "p.jpg")


def test_placement_asked_for_replaces_the_files_own(tmp_path):
    from patchbench.cache.patches import placed
    from patchbench.config import PatchFile
    from patchbench.presets import load_preset

    patch = Patch(torch.rand(1, 4, 4), torch.ones(1, 4, 4), {"placement": "top-left", "margin": 3, "target": 0})
    assert placed(patch, PatchFile("f")) is patch
    assert placed(patch, PatchFile("f", region="box:0,0,8,8")).placement.label() == "top-left+3@box:0,0,8,8"
    moved = placed(patch, PatchFile("f", placement="random", seed=4))
    assert moved.placement.label() == "random+s4" and moved.meta["target"] == 0
    assert placed(patch, PatchFile("f", placement="affine")).placement.label() == "affine(t0.2,r45,s0.5-1)+s0"
    with pytest.raises(PatchbenchError, match="placement must be one of"):
        placed(patch, PatchFile("f", placement="left"))
    with pytest.raises(PatchbenchError, match=r"patches.0.placement must be one of"):
        load_preset("demo-fmnist", ["patches=[{file: a.png, placement: left}]"])


# ---- placements: random per image, placement masks ------------------------------------------------------


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """N×H×W: the pixels a patch changed (any channel)."""
    return (before != after).any(1)


@pytest.mark.parametrize("region", ["box:3,20,14,10", "quadrant:bottom-left", "file"])
def test_evaluation_keeps_every_patch_pixel_inside_the_mask(region, tmp_path):
    size = 32
    if region == "file":  # a mask image of another size: resized by nearest neighbour
        m = np.zeros((64, 64), np.uint8)
        m[10:40, 30:62] = 255
        Image.fromarray(m).save(tmp_path / "mask.png")
        region = str(tmp_path / "mask.png")
    allowed = region_mask(region, size)
    patch = Patch(torch.ones(3, 5, 5), torch.ones(1, 5, 5), {})  # white on black: every patch pixel shows
    x = torch.zeros(300, 3, size, size)
    place = Placement("random", region=region, seed=7)
    out = patch.apply(x, place, indices=torch.arange(1000, 1300))
    hit = changed(x, out)
    assert hit.any(0).logical_and(~allowed).sum() == 0  # no pixel of any patch outside the mask
    assert (hit.sum((1, 2)) == 25).all()  # the whole patch is on every image
    assert len({tuple(h.nonzero()[0].tolist()) for h in hit}) > 20  # and it moves
    # image i's place depends on i only: the same in another batch split
    again = torch.cat([patch.apply(x[:100], place, torch.arange(1000, 1100)), patch.apply(x[100:], place, torch.arange(1100, 1300))])
    assert torch.equal(again, out)


def test_fixed_placement_outside_the_mask_and_a_mask_too_small_are_refused():
    cfg = AttackConfig(sizes=[6], placement="top-right", margin=0, region="quadrant:bottom-left")
    with pytest.raises(PatchbenchError, match="not inside the placement region"):
        LaVAN.check_config(cfg, 32)
    with pytest.raises(PatchbenchError, match="no 6 px box fits"):
        LaVAN.check_config(AttackConfig(sizes=[6], placement="random", region="box:0,0,5,5"), 32)
    with pytest.raises(PatchbenchError, match="leaves the placement region"):
        AdversarialPatch.check_config(AttackConfig(sizes=[6], placement="bottom-left", margin=0, rotation=45,
                                                   scale_range=[1, 1], region="quadrant:bottom-left"), 32)


class Recorder(torch.nn.Module):
    """A classifier that keeps every batch it is shown."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1) + self.w


@pytest.mark.parametrize("attack,extra", [(LaVAN, {}), (AdversarialPatch, {"rotation": 45.0, "scale_range": [0.6, 1.3]})])
def test_training_keeps_every_patch_pixel_inside_the_mask(attack, extra):
    size, region = 32, "box:4,6,16,20"
    allowed = region_mask(region, size)
    cfg = AttackConfig(name=attack.name, sizes=[5], target=1, placement="random", region=region, steps=6, batch_size=16,
                       lr=0.1, restarts=2, **extra)
    model = Recorder()
    atk = attack.from_config(model, cfg, size)
    x0 = torch.full((16, 3, size, size), 0.5)
    batches = iter(lambda: (x0, torch.zeros(16, dtype=torch.long)), None)
    patch = atk.fit(batches, channels=3, holdout=(x0[:8], torch.zeros(8, dtype=torch.long)))
    atk.success_rate([(x0, torch.zeros(16, dtype=torch.long))])
    assert len(model.seen) >= 6 + 2 + 1  # training steps, the two restarts' holdout, the success rate
    for batch in model.seen:
        hit = (batch != 0.5).any(1)
        assert hit.any() and hit.any(0).logical_and(~allowed).sum() == 0
    assert patch.meta["region"] == region and patch.placement.region == region


def test_a_preset_without_a_mask_trains_as_before():
    """No region: the random draws of LaVAN's placement are the old code's (cached patches keep their meaning)."""
    atk = LaVAN(Recorder(), 5, 1, Placement("top-right", 2), 32, random_placement=True, progress=False)
    gen = torch.Generator().manual_seed(3)
    top, left = atk._offsets(8, gen, torch.device("cpu"))
    ref = torch.Generator().manual_seed(3)
    assert torch.equal(top, torch.randint(0, 28, (8,), generator=ref)) and torch.equal(left, torch.randint(0, 28, (8,), generator=ref))
    assert Placement("top-right", 2).label() == "top-right+2"  # the placement column of every stored cell


# ---- export, then evaluate --patch: the stored cell, exactly ------------------------------------------------


@needs_fmnist
@pytest.mark.slow
def test_exported_patch_reapplied_reproduces_its_stored_cell(tmp_path, one_thread):
    preset = tiny_preset(tmp_path / "tiny.yaml", name="tiny-export")
    first, second = tmp_path / "first", tmp_path / "second"
    small = ["--set", "data.eval_n=120", "--set", "attacks.0.sizes=[6]", "--set", "attacks.0.steps=6",
             "--set", "model.train.train_n=600", "--set", "defenses.0.lambdas=[2.3]"]
    run_cli("sweep", "--preset", preset, "--results", first, "--no-progress", *small)
    out = run_cli("export-patch", "--preset", preset, "--attack", "lavan", "--size", 6, "--results", first,
                  "--out", tmp_path / "shared" / "lavan6.png", *small).stdout
    png, side = tmp_path / "shared" / "lavan6.png", tmp_path / "shared" / "lavan6.json"
    assert str(png) in out and png.is_file()
    meta = json.loads(side.read_text())
    assert {"attack", "target", "size_px", "model_id", "model_config_hash", "preset_hash", "seed", "train_success_rate",
            "git_sha", "content_id"} <= set(meta) and meta["size_px"] == 6 and meta["attack"] == "lavan"
    # another results folder with only the cached model: the patch comes from the PNG alone
    (second / "artifacts").mkdir(parents=True)
    shutil.copytree(first / "artifacts" / "models", second / "artifacts" / "models")
    for defense, lam in (("lgs", "2.3"), ("none", "0")):
        run_cli("evaluate", "--preset", preset, "--patch", png, "--defense", defense, "--lam", lam, "--results", second,
                "--no-progress", *small)
    stored, again = cells(first), cells(second)
    assert len(again) == 2
    for r in again.itertuples():
        s = stored[stored["run_id"] == r.run_id]  # the same cell identity: model, patch id, placement, defense, λ
        assert len(s) == 1 and s["accuracy"].iloc[0] == r.accuracy and s["patch_id"].iloc[0] == meta["content_id"]
        pa = pd.read_parquet(first / "predictions" / f"{r.run_id}.parquet")
        pb = pd.read_parquet(second / "predictions" / f"{r.run_id}.parquet")
        assert pa.equals(pb)  # image by image
    # the picture's 8-bit pixels alone are another patch: another cell
    with Image.open(png) as im:
        im.convert("L").save(tmp_path / "plain.png")
    res = run_cli("evaluate", "--preset", preset, "--patch", tmp_path / "plain.png", "--defense", "none",
                  "--results", second, "--no-progress", *small).stdout
    assert not any(rid in res for rid in again["run_id"])
    # and with a placement of its own: a random place inside a mask is a new cell, labelled so
    res = run_cli("evaluate", "--preset", preset, "--patch", png, "--placement", "random", "--region", "quadrant:top-left",
                  "--defense", "none", "--results", second, "--no-progress", *small)
    placed = cells(second)
    assert "random+s0@quadrant:top-left" in set(placed["placement"])
    bad = run_cli("evaluate", "--preset", preset, "--patch", png, "--placement", "top-right", "--region", "quadrant:top-left",
                  "--results", second, "--no-progress", *small, check=False)
    assert bad.returncode == 2 and "not inside the placement region" in bad.stderr and bad.stderr.count("\n") == 1
    # a preset's patches: list in a sweep (a path beside the preset file; an entry with its own placement), no attacks
    raw = yaml.safe_load(preset.read_text())
    raw.pop("certified", None)  # its adaptive part trains a LaVAN; this preset trains nothing
    raw.update(name="tiny-export-files", attacks=[], patches=["shared/lavan6.png",
                                                             {"file": str(png), "placement": "random", "region": "box:0,0,16,32"}])
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(raw))
    third = tmp_path / "third"
    (third / "artifacts").mkdir(parents=True)
    shutil.copytree(first / "artifacts" / "models", third / "artifacts" / "models")
    no_attacks = [a for i in range(0, len(small), 2) if "attacks" not in small[i + 1] for a in small[i:i + 2]]
    run_cli("sweep", "--preset", tmp_path / "files.yaml", "--results", third, "--no-progress", *no_attacks)
    swept = cells(third)
    assert {"top-right+2", "random+s0@box:0,0,16,32"} <= set(swept["placement"]) and len(swept) == 3 * 2
    for r in swept[swept["placement"] == "top-right+2"].itertuples():  # the exported patch at its own place: the stored cells
        assert stored.loc[stored["run_id"] == r.run_id, "accuracy"].tolist() == [r.accuracy]
    assert not (third / "artifacts" / "patches").exists()  # nothing trained


def test_export_from_a_cached_artifact_and_its_one_line_errors(tmp_path):
    patch = random_patch(1, size=6)
    patch.meta.update(seed=3, train_success_rate=0.5, loss_trace=[1.0, 0.5])
    pt = patch.save(tmp_path / "cache" / "lavan-6px")
    r = run_cli("export-patch", "--from", pt, "--out", tmp_path / "shared")  # a folder: named by attack, size, content id
    png = tmp_path / "shared" / f"lavan-6px-{patch.content_id()[:8]}.png"
    assert str(png) in r.stdout
    back = load_patch_file(png)
    assert torch.equal(back.pixels, patch.pixels) and back.meta["seed"] == 3 and "loss_trace" not in back.meta
    side = json.loads(png.with_suffix(".json").read_text())
    assert side["content_id"] == patch.content_id() and side["placement"] == "center+0" and side["git_sha"]
    # by name or cache key under --results
    r = run_cli("export-patch", "--from", "lavan-6", "--results", tmp_path / "cache", "--out", tmp_path / "by-key.png",
                check=False)
    assert r.returncode == 2 and "no cached patch artifact(s) match" in r.stderr  # not under artifacts/patches
    (tmp_path / "res" / "artifacts" / "patches").mkdir(parents=True)
    shutil.copytree(tmp_path / "cache", tmp_path / "res" / "artifacts" / "patches" / "p")
    run_cli("export-patch", "--from", "lavan-6", "--results", tmp_path / "res", "--out", tmp_path / "by-key.png")
    assert torch.equal(load_patch_file(tmp_path / "by-key.png").pixels, patch.pixels)
    empty = tmp_path / "empty"
    for args, words in ((["--attack", "lavan", "--size", "12", "--results", empty], "not trained yet"),
                        (["--attack", "lavan"], "needs --attack and --size"),
                        (["--attack", "lavan", "--size", "7", "--results", empty], "sizes [10, 12, 14]"),
                        (["--from", pt, "--size", "6"], "--from exports one artifact")):
        bad = run_cli("export-patch", "--preset", "demo-fmnist", "--out", tmp_path / "x.png", *args, check=False)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and words in bad.stderr, bad.stderr
    assert not (tmp_path / "x.png").exists() and not empty.exists()
