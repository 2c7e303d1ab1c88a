"""Fail fast and clean (issue 14): every input checked before any work, bounded requests, every
valid image, and property-based tests of every parser (hypothesis): any input parses to something
valid or raises PatchbenchError — never another exception, never a hang."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import run_cli
from patchbench.config import apply_overrides, parse_lambdas, parse_params
from patchbench.presets import load_preset, preset_from_dict
from patchbench.defenses import DEFENSES, build_defense
from patchbench.errors import PatchbenchError
from patchbench.imageio import read_image
from patchbench.results import parse_shard

PROPS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
NUMS = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True)).map(str)
LAMBDA_TEXT = st.one_of(TEXT, st.lists(NUMS, min_size=1, max_size=4).map(":".join),
                        st.lists(NUMS, min_size=1, max_size=6).map(",".join))


# ---- the four failures of the issue: one line, exit 2, nothing written, within 10 s ------------

def _pb(*args, **kw):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "patchbench", *map(str, args)], capture_output=True, text=True,
                          timeout=60, **kw)
    return proc, time.perf_counter() - t0


def _one_line_error(proc, seconds, *words):
    assert proc.returncode == 2 and seconds < 10, (proc.returncode, seconds, proc.stderr[-500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words), proc.stderr


def test_a_billion_lambdas_is_refused_before_expanding(tmp_path):
    proc, secs = _pb("sweep", "--lambdas", "0:1000000000:1", "--results", tmp_path / "r")
    _one_line_error(proc, secs, "1,000,000,001", "PATCHBENCH_MAX_LAMBDAS")
    assert not (tmp_path / "r").exists()
    with pytest.raises(PatchbenchError, match="limit of 5"):
        os.environ["PATCHBENCH_MAX_LAMBDAS"] = "5"
        try:
            parse_lambdas("1:10:1")
        finally:
            del os.environ["PATCHBENCH_MAX_LAMBDAS"]
    assert len(parse_lambdas("0:9999:1")) == 10_000  # at the limit: fine


def test_results_below_a_regular_file_fails_before_training(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    proc, secs = _pb("train-model", "--results", blocker / "sub", "--set", "model.train.epochs=5")
    _one_line_error(proc, secs, "is a file, not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and blocker.read_text() == "x"


def test_tables_read_a_read_only_results_directory(tmp_path):
    from patchbench.results import ResultStore

    ro = tmp_path / "archive"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert ResultStore(ro, read_only=True).load_cells().empty  # readers only need a directory
        if not os.access(ro, os.W_OK):  # (root ignores permissions)
            with pytest.raises(PatchbenchError, match="not writable"):
                ResultStore(ro)
    finally:
        ro.chmod(0o755)


def test_defend_out_naming_an_existing_file(tmp_path):
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    proc, secs = _pb("defend", tmp_path / "in.png", "--out", out)
    _one_line_error(proc, secs, "--out", "is a file")
    assert out.read_bytes() == b"keep me"


def test_attack_target_out_of_range_fails_before_training(tmp_path):
    proc, secs = _pb("sweep", "--set", "attacks.0.target=10", "--results", tmp_path / "r")
    _one_line_error(proc, secs, "attacks.0.target", "0..9")
    assert not (tmp_path / "r").exists()


def test_a_grid_over_the_cell_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHBENCH_MAX_CELLS", "10")
    r = run_cli("sweep", "--lambdas", "1:3:0.5", "--results", tmp_path / "r", check=False)
    assert r.returncode == 2 and "PATCHBENCH_MAX_CELLS" in r.stderr and not (tmp_path / "r").exists()


# ---- every valid image ------------------------------------------------------------------------

def _write(path: Path, kind: str, h: int, w: int, rng) -> Path:
    if kind == "rgb":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    elif kind == "gray":
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    elif kind == "gray16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif kind == "rgba":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    elif kind == "la":
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert("LA")
    elif kind == "palette":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert("P")
    elif kind == "bilevel":
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert("1")
    else:  # an EXIF-rotated JPEG (orientation 6: displayed rotated by 90°)
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(path.with_suffix(".jpg"), exif=exif)
        return path.with_suffix(".jpg")
    im.save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def test_image_modes_follow_the_documented_rule(tmp_path):
    rng = np.random.default_rng(0)
    sixteen = np.array([[0, 65535], [1000, 30000]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    assert torch.allclose(read_image(tmp_path / "g16.png")[0], torch.from_numpy(sixteen / 65535.0).float())
    Image.new("RGBA", (3, 2), (10, 20, 30, 0)).save(tmp_path / "a.png")  # alpha dropped, colour kept
    assert torch.equal(read_image(tmp_path / "a.png")[:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)
    rotated = read_image(_write(tmp_path / "r", "exif", 4, 6, rng))
    assert rotated.shape == (3, 6, 4)  # EXIF orientation applied
    for kind, channels in (("gray", 1), ("la", 1), ("bilevel", 1), ("palette", 3), ("rgb", 3)):
        assert read_image(_write(tmp_path / kind, kind, 5, 3, rng)).shape == (channels, 5, 3)


KINDS = ["rgb", "gray", "gray16", "rgba", "la", "palette", "bilevel", "exif"]
MODEL_FREE = [n for n in DEFENSES if n not in ("slgs", "wlgs", "dw")]


@PROPS
@given(kind=st.sampled_from(KINDS), h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**16),
       defense=st.sampled_from(MODEL_FREE))
def test_defend_fuzz_every_small_image_and_defense(tmp_path_factory, kind, h, w, seed, defense):
    """Random small images of every kind through `patchbench defend` (the runner's path): a PNG of
    the input's size comes out, or a one-line PatchbenchError (e.g. JPEG on an unsupported channel count)."""
    from patchbench.defend import defend_files

    d = tmp_path_factory.mktemp("fuzz")
    src = _write(d / "img", kind, h, w, np.random.default_rng(seed))
    try:
        n = defend_files([src], d / "out", defense, 2.3, {}, None, False, torch.device("cpu"))
    except PatchbenchError:
        return
    assert n == 1
    out = Image.open(d / "out" / f"{src.stem}.png")
    expect = (w, h) if kind != "exif" else (h, w)
    assert out.size == expect


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (14, 14)])
def test_lgs_on_images_smaller_than_the_window(size):
    x = torch.rand(2, 3, *size)
    for name in ("lgs", "slgs"):
        d = build_defense(name, {"window": 15, "overlap": 5})
        if name == "slgs":
            continue  # needs a classifier; its g(x) is LGS's (same code path)
        y = d.apply(x, d.maps(x), 2.3)
        assert y.shape == x.shape and torch.isfinite(y).all()


# ---- property-based tests of every parser ------------------------------------------------------

@PROPS
@given(text=LAMBDA_TEXT)
def test_lambda_parser_returns_valid_lambdas_or_one_error(text):
    try:
        lams = parse_lambdas(text)
    except PatchbenchError:
        return
    assert lams and all(isinstance(v, float) and v >= 0 and np.isfinite(v) for v in lams)
    assert len(lams) == len(set(lams)) <= 10_000


@PROPS
@given(items=st.lists(st.one_of(TEXT, st.tuples(st.lists(st.sampled_from(["data", "model", "attacks", "0", "1", "train",
                                                                                "eval_n", "x", ""]), min_size=1, max_size=4),
                                                    TEXT).map(lambda kv: ".".join(kv[0]) + "=" + kv[1])), max_size=4))
def test_set_overrides_apply_or_raise_one_error(items):
    raw = yaml.safe_load((Path(__file__).parents[1] / "patchbench/papers/icaart2022/presets/demo-fmnist.yaml").read_text())
    try:
        preset_from_dict(apply_overrides(raw, items))
    except PatchbenchError:
        pass


@PROPS
@given(items=st.lists(st.one_of(TEXT, st.tuples(TEXT, TEXT).map("=".join)), max_size=5))
def test_param_parser_returns_a_dict_or_one_error(items):
    try:
        params = parse_params(items)
    except PatchbenchError:
        return
    assert isinstance(params, dict) and all(isinstance(k, str) and k for k in params)


@PROPS
@given(text=st.one_of(TEXT, st.tuples(st.integers(-5, 10**6), st.integers(-5, 10**6)).map(lambda t: f"{t[0]}/{t[1]}")))
def test_shard_parser(text):
    try:
        i, n = parse_shard(text)
    except PatchbenchError:
        return
    assert 0 <= i < n


YAMLISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-100, 10**6), st.floats(allow_nan=False), TEXT),
                       lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(TEXT, kids, max_size=3)),
                       max_leaves=12)
SECTIONS = st.fixed_dictionaries({}, optional={k: YAMLISH for k in ("data", "model", "attacks", "defenses", "device",
                                                                    "experiment", "paper", "name", "evasion")})


@PROPS
@given(doc=st.one_of(YAMLISH, SECTIONS))
def test_preset_yaml_loads_or_raises_one_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("preset") / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        p = load_preset(str(path))
    except PatchbenchError:
        return
    assert p.name
