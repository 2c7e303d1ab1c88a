"""The CLI on a small Fashion-MNIST slice: one end-to-end run as a subprocess (like a user, and
killed with SIGKILL), the rest in-process through the same entry point (``main``)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import cells, needs_fmnist, pb, run_cli, tiny_preset

NUMBERS = ["run_id", "n", "correct", "accuracy", "ci_low", "ci_high", "target_hits", "n_nontarget", "attack_success_rate"]


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """The tiny preset, its attack-failure audit on 8 images a cell with 4 probes each (the default 32 x 20
    in every one of this module's ~12 sweeps; the audit's own tests are test_audit_*.py)."""
    path = tiny_preset(tmp_path_factory.mktemp("preset") / "tiny.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["audit"] = {"n": 8, "probes": 4}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def swept(preset, tmp_path_factory):
    """One uninterrupted sweep, end to end as a subprocess: the reference for resume and
    determinism. Tests that add cells work on a copy (no test depends on another's order)."""
    results = tmp_path_factory.mktemp("ref") / "results"
    pb("sweep", "--preset", preset, "--results", results, "--no-progress")
    return results


@needs_fmnist
@pytest.mark.slow
def test_sweep_table_and_rerun(preset, swept):
    df = cells(swept)
    # conditions (clean + 2 patches) x (none + 3 lambdas)
    assert len(df) == 3 * 4 and df["run_id"].is_unique
    assert set(df["lam"].dropna().round(2)) == {1.5, 1.9, 2.3}
    assert (df["n"] == 300).all() and df["accuracy"].between(0, 1).all()
    assert ((df["ci_low"] <= df["accuracy"]) & (df["accuracy"] <= df["ci_high"])).all()
    assert len(list((swept / "predictions").glob("*.parquet"))) == len(df)
    for f in ("lavan-6px", "lavan-8px"):
        assert list((swept / "artifacts/patches").glob(f"{f}*.pt"))
    before = {f.name: f.stat().st_mtime_ns for f in (swept / "cells").iterdir()}
    again = run_cli("sweep", "--preset", preset, "--results", swept, "--no-progress")
    assert "12 cells" in again.stdout
    assert {f.name: f.stat().st_mtime_ns for f in (swept / "cells").iterdir()} == before  # nothing recomputed
    tab = run_cli("table", "icaart2022-1", "--preset", "tiny-fmnist", "--results", swept, "--format", "csv")
    t = pd.read_csv(pd.io.common.StringIO(tab.stdout))
    assert t["Defense"].tolist()[:4] == ["No defense", "LGS", "LGS", "LGS"]
    assert "Clean ours" in t.columns and "Clean paper" in t.columns
    assert t.loc[0, "Clean paper"] == 72.24
    md = run_cli("table", "icaart2022-1", "--preset", "tiny-fmnist", "--results", swept, "--format", "markdown")
    assert "different dataset and model" in md.stdout
    # the machine each cell came from, under the table with the measured spread of its scale (issue 25)
    assert set(df["threads"]) == {torch.get_num_threads()} and set(df["torch"]) == {torch.__version__}
    assert f"_Computed on {df['cpu'].iloc[0]}, {torch.get_num_threads()} torch threads, torch {torch.__version__}._" in md.stdout
    assert "Machine-to-machine spread of tiny-fmnist: not measured" in md.stdout
    assert "\\begin{tabular}" in run_cli("table", "icaart2022-1", "--preset", "tiny-fmnist", "--results", swept, "--format", "latex").stdout


@needs_fmnist
@pytest.mark.slow
def test_same_preset_and_seed_twice_identical_numbers(preset, swept, tmp_path):
    other = tmp_path / "results"
    run_cli("sweep", "--preset", preset, "--results", other, "--no-progress")
    pd.testing.assert_frame_equal(cells(swept)[NUMBERS], cells(other)[NUMBERS])


@needs_fmnist
@pytest.mark.slow
def test_seeds_and_restarts_twice_identical_tables(preset, tmp_path):
    """Issue 9's reproducibility line: with several patch seeds and batched restarts, two runs
    from empty results directories give the same patches, cells and rendered table."""
    opts = ["--set", "attacks.0.sizes=[6]", "--set", "attacks.0.seeds=[0,1]", "--set", "attacks.0.restarts=2",
            "--set", "attacks.0.select_n=50", "--set", "defenses.0.lambdas=[2.3]", "--no-progress"]
    tables, patches = [], []
    for run in ("a", "b"):
        results = tmp_path / run
        run_cli("sweep", "--preset", preset, "--results", results, *opts)
        tables.append(run_cli("table", "icaart2022-1", "--preset", "tiny-fmnist", "--results", results,
                              "--format", "markdown").stdout)
        patches.append({f.name: torch.load(f, weights_only=True)["pixels"] for f in sorted((results / "artifacts/patches").glob("*.pt"))})
        cells_now = cells(results)
        assert sorted(cells_now["attack_seed"].dropna().unique()) == [0, 1]
    assert tables[0] == tables[1] and " ± " in tables[0]
    assert patches[0].keys() == patches[1].keys() and len(patches[0]) == 2
    for name, pixels in patches[0].items():
        assert torch.equal(pixels, patches[1][name]), name
    first, second = patches[0].values()
    assert not torch.equal(first, second)  # the two seeds are two different draws


@needs_fmnist
@pytest.mark.slow
def test_two_shards_give_exactly_the_unsharded_cells(preset, swept, tmp_path):
    results = tmp_path / "results"
    first = run_cli("sweep", "--preset", preset, "--results", results, "--shard", "0/2", "--no-progress")
    assert "(shard 0/2)" in first.stdout
    part = cells(results)
    assert 0 < len(part) < 12  # one shard computes a slice of the grid
    status = run_cli("status", "--preset", preset, "--results", results)
    assert f"12 cells planned, {len(part)} done, {12 - len(part)} missing" in status.stdout
    run_cli("sweep", "--preset", preset, "--results", results, "--shard", "1/2", "--no-progress")
    pd.testing.assert_frame_equal(cells(swept)[NUMBERS], cells(results)[NUMBERS])
    assert "12 cells planned, 12 done, 0 missing" in run_cli("status", "--preset", preset, "--results", results).stdout


@needs_fmnist
def test_status_before_anything_is_trained_says_what_is_missing(preset, tmp_path):
    r = run_cli("status", "--preset", preset, "--results", tmp_path / "results")
    assert "0 cells stored; model small_vgg (raw) not trained yet" in r.stdout
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.parquet"))


@needs_fmnist
@pytest.mark.slow
def test_local_executor_completes_the_grid_through_submitit(preset, swept, tmp_path):
    pytest.importorskip("submitit", reason="the cluster extra (submitit) is not installed")
    results = tmp_path / "results"
    shutil.copytree(swept / "artifacts", results / "artifacts")
    r = run_cli("sweep", "--preset", preset, "--results", results, "--executor", "local", "--shards", 2, "--no-progress")
    assert "2 local job(s) finished; 12 cells" in r.stdout
    pd.testing.assert_frame_equal(cells(swept)[NUMBERS], cells(results)[NUMBERS])
    assert list((results / "submitit").glob("*_log.out"))  # submitit kept each job's log


@needs_fmnist
@pytest.mark.slow
def test_two_concurrent_writers_never_duplicate_or_tear_a_cell(preset, swept, tmp_path):
    """Two processes sweeping the same grid into one results directory at once (shards on a shared
    filesystem): every cell file is whole, once, with the numbers of a lone run."""
    results = tmp_path / "results"
    shutil.copytree(swept / "artifacts", results / "artifacts")  # same cached model and patches, as shards share
    procs = [subprocess.Popen([sys.executable, "-m", "patchbench", "sweep", "--preset", str(preset), "--results", str(results),
                               "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    files = sorted((results / "cells").iterdir())
    assert len(files) == 12 and all(f.suffix == ".parquet" for f in files)  # no temp file left, no extra file
    pd.testing.assert_frame_equal(cells(swept)[NUMBERS], cells(results)[NUMBERS])


@needs_fmnist
@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["patch", "cells"])
def test_sigkill_mid_sweep_then_rerun_matches(preset, swept, tmp_path, kill_when):
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "patchbench", "sweep", "--preset", str(preset),
                             "--results", str(results), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    watch = results / ("artifacts/patches" if kill_when == "patch" else "cells")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if watch.is_dir() and any(watch.glob("*.pt" if kill_when == "patch" else "*.parquet")):
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((results / "cells").glob("*.parquet"))) if (results / "cells").is_dir() else 0
    assert killed and partial < 12, "the sweep should have been killed mid-way"
    run_cli("sweep", "--preset", preset, "--results", results, "--no-progress")
    pd.testing.assert_frame_equal(cells(swept)[NUMBERS], cells(results)[NUMBERS])
    leftovers = [f for f in results.rglob(".*") if f.is_file()]
    assert leftovers == []


@needs_fmnist
@pytest.mark.slow
def test_train_patch_and_evaluate_one_cell(preset, swept, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(swept, results)  # the shared reference stays untouched
    out = tmp_path / "p" / "my_patch.pt"
    r = run_cli("train-patch", "--preset", preset, "--attack", "lavan", "--size", 7, "--steps", 5, "--out", out,
                "--results", results, "--no-progress")
    assert "7px" in r.stdout
    assert {f.name for f in out.parent.iterdir()} == {"my_patch.pt", "my_patch.png", "my_patch.json"}
    r = run_cli("evaluate", "--preset", preset, "--patch", out, "--defense", "lgs", "--lam", 2.3, "--results", results,
                "--no-progress")
    assert "lavan 7px -> class 0 | lgs λ=2.3 | accuracy" in r.stdout
    assert len(cells(results)) == 13


def _write_images(d: Path, n=4, size=48):
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        arr = np.full((size, size, 3), 120, np.uint8)
        arr[5:20, 25:40] = rng.integers(0, 255, (15, 15, 3))
        Image.fromarray(arr).save(d / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(d / "gray.jpg")


def test_defend_directory_equals_one_by_one(tmp_path):
    src = tmp_path / "in"
    _write_images(src)
    run_cli("defend", src, "--out", tmp_path / "all", "--lam", 2.3, "--param", "window=7", "--param", "overlap=2", "--save-maps")
    names = sorted(f.name for f in (tmp_path / "all").glob("*.png"))
    assert names == ["gray.png", "img0.png", "img1.png", "img2.png", "img3.png"]
    assert len(list((tmp_path / "all" / "maps").glob("*.png"))) == 5
    for f in sorted(src.iterdir()):
        run_cli("defend", f, "--out", tmp_path / "one", "--lam", 2.3, "--param", "window=7", "--param", "overlap=2")
    for name in names:
        a = np.asarray(Image.open(tmp_path / "all" / name))
        b = np.asarray(Image.open(tmp_path / "one" / name))
        assert np.array_equal(a, b)
    assert np.asarray(Image.open(tmp_path / "all" / "gray.png")).ndim == 2
    changed = np.asarray(Image.open(tmp_path / "all" / "img0.png")).astype(int) - np.asarray(Image.open(src / "img0.png")).astype(int)
    assert (changed != 0).any()


def test_defend_lambda_zero_and_constant_image(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((64, 64, 3), (30, 140, 200), np.uint8)).save(src / "flat.png")
    arr = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(src / "noise.png")
    run_cli("defend", src, "--out", tmp_path / "z", "--lam", 0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "z" / "noise.png")), arr)
    for lam in (1, 3.5, 100):
        run_cli("defend", src / "flat.png", "--out", tmp_path / f"c{lam}", "--lam", lam,
                "--param", "window=15", "--param", "overlap=5", "--param", "threshold=0.2")
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"c{lam}" / "flat.png")), np.asarray(Image.open(src / "flat.png")))


BAD_INPUTS = [  # (what, argv, the error line after "error: ")
    ("unknown preset", ["sweep", "--preset", "nope"], "unknown preset 'nope'; known: advml2019-cifar10, "),
    ("unknown model", ["sweep", "--set", "model.arch=resnet9000"], "unknown model 'resnet9000'; known: vgg16, "),
    ("unknown dataset", ["sweep", "--set", "data.dataset=svhn"], "unknown dataset 'svhn'; known: fashion-mnist, "),
    ("unknown defense", ["sweep", "--defenses", "lgs,jpegg"], "unknown defense 'jpegg'; known: none, lgs, "),
    ("unknown attack", ["train-patch", "--attack", "pixelz", "--size", "6"], "unknown patch attack 'pixelz'; known: lavan, "),
    ("lambdas reversed", ["sweep", "--lambdas", "3.5:1.5"], "malformed λ range '3.5:1.5': stop is below start"),
    ("lambdas not numbers", ["sweep", "--lambdas", "a:b"], "malformed λ range 'a:b': start, stop and step must be numbers"),
    ("lambdas zero step", ["sweep", "--lambdas", "1:2:0"], "malformed λ range '1:2:0': step must be > 0"),
    ("negative lambda", ["evaluate", "--lam", "-1"], "λ must be a finite number >= 0, got -1.0"),
    ("negative lambda in list", ["sweep", "--lambdas", "1,-2"], "λ must be a finite number >= 0, got -2.0"),
    ("patch too big", ["train-patch", "--size", "64"], "patch size must be an integer in 1..63 px for 64 px images, got 64"),
    ("patch size zero", ["train-patch", "--size", "0"], "patch size must be an integer in 1..63 px for 64 px images, got 0"),
    ("patch size negative", ["train-patch", "--size", "-3"], "patch size must be an integer in 1..63 px for 64 px images, got -3"),
    ("missing patch file", ["evaluate", "--patch", "{tmp}/missing.pt"], "patch file not found: {tmp}/missing.pt"),
    ("corrupt patch file", ["sweep", "--patches", "{tmp}/corrupt.pt"], "cannot read patch file {tmp}/corrupt.pt: "),
    ("missing dataset root", ["sweep", "--data-root", "{tmp}/no_such_dir"], "dataset root {tmp}/no_such_dir does not exist"),
    ("imagenet weights offline", ["train-model", "--preset", "icaart2022-vgg16", "--data-root", "{tmp}/imagenet"],
     "ImageNet weights for vgg16 (VGG16_Weights.IMAGENET1K_V1) are not available offline: place vgg16-397923af.pth in "),
    ("unknown table", ["table", "icaart2099-9"], "unknown table 'icaart2099-9'; known: icaart2022-1, "),
    ("unknown list", ["list", "gadgets"], "unknown list 'gadgets'; use models, attacks, "),
    ("bad option value", ["sweep", "--set", "data.eval_n=-5"], "data.eval_n must be an integer >= 0, got -5"),
    ("bad test_n", ["sweep", "--set", "model.train.test_n=-1"], "model.train.test_n must be an integer >= 0, got -1"),
    ("unknown defense parameter", ["evaluate", "--defense", "jpeg", "--param", "window=5"],
     "unknown parameter 'window' for defense jpeg; allowed: quality, backend"),
    ("malformed --param", ["evaluate", "--param", "window"], "--param expects key=value, got 'window'"),
    ("unknown paper", ["reproduce", "nips2099"], "unknown paper 'nips2099'; known: icaart2022, "),
    ("unknown scale", ["reproduce", "icaart2022", "--preset-scale", "huge"], "unknown --preset-scale 'huge' for icaart2022; use paper or demo"),
    ("unknown figure", ["plot", "pie-chart"], "unknown figure 'pie-chart'; known: lambda-curve, "),
    ("evasion preset with patches", ["sweep", "--preset", "demo-tomm-fmnist", "--lambdas", "1.5"],
     "preset demo-tomm-fmnist is an evasion experiment: --defenses, --lambdas and --patches apply to patch-defense presets"),
    ("unknown patch optimizer", ["sweep", "--set", "attacks.0.optimizer=lbfgs"], "attacks.0.optimizer must be one of sgd, adam, sign, got 'lbfgs'"),
    ("zero restarts", ["sweep", "--set", "attacks.0.restarts=0"], "attacks.0.restarts must be an integer in 1..64, got 0"),
    ("shard out of range", ["sweep", "--shard", "2/2"], "--shard must be i/n with 0 <= i < n (e.g. 0/4), got '2/2'"),
    ("malformed shard", ["sweep", "--shard", "half"], "--shard must be i/n with 0 <= i < n (e.g. 0/4), got 'half'"),
    ("unknown executor", ["sweep", "--executor", "kubernetes"], "--executor must be one of local, slurm, got 'kubernetes'"),
    ("shard with executor", ["sweep", "--executor", "local", "--shard", "0/2"], "--shard and --executor exclude each other"),
    ("malformed seeds", ["sweep", "--seeds", "1,x"], "--seeds expects a comma list of integers, got '1,x'"),
    ("duplicate seeds", ["sweep", "--set", "attacks.0.seeds=[1,1]"], "attacks.0.seeds must be a list of distinct integers, got [1, 1]"),
    ("bad sanity threshold", ["sweep", "--set", "sanity.min_success=2"], "sanity.min_success must be a fraction in [0, 1], got 2"),
    ("--set adds a section", ["sweep", "--preset", "demo-fmnist-inception", "--set", "certified.model.epochs=1"],
     "--set certified.model.epochs: preset demo-fmnist-inception has no certified section"),
    ("--set reaches no preset", ["reproduce", "icaart2022", "--preset-scale", "paper", "--set", "certified.k=4"],
     "--set certified.k: none of the presets (icaart2022-vgg16, icaart2022-inception_v3) has a certified section"),
    ("plain fine-tuning", ["sweep", "--set", "certified.model.training=raw"],
     "certified.model.training must be a fine-tuning objective other than raw"),
]


@pytest.mark.parametrize("what,args,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, monkeypatch, what, args, message):
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    (tmp_path / "imagenet" / "val" / "n0").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if argv[0] not in ("list", "plot"):
        argv += ["--results", str(results)]
    r = run_cli(*argv, check=False)
    assert r.returncode == 2, (what, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: " + message.replace("{tmp}", str(tmp_path))), (what, r.stderr)
    assert not results.exists(), f"{what}: wrote {list(results.rglob('*'))}"


@pytest.mark.parametrize("args,message", [
    (["{t}/missing.png"], "image file not found: {t}/missing.png"),
    (["{t}/broken.png"], "cannot read image {t}/broken.png: OSError (not a valid PNG/JPEG)"),
    (["{t}/ok.png", "--defense", "nope"], "unknown defense 'nope'; known: none, lgs, "),
    (["{t}/ok.png", "--lam", "-2"], "λ must be a finite number >= 0, got -2.0"),
    (["{t}/ok.png", "--lam", "1:2"], "--lam takes one value, got '1:2' (use sweep --lambdas for ranges)"),
    (["{t}/ok.png", "--param", "nope=1"], "unknown parameter 'nope' for defense lgs; allowed: threshold, window, "),
], ids=["missing", "broken", "defense", "lambda", "lambda-range", "param"])
def test_defend_bad_inputs(tmp_path, args, message):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "ok.png")
    out = tmp_path / "out"
    r = run_cli("defend", *[a.replace("{t}", str(tmp_path)) for a in args], "--out", out, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: " + message.replace("{t}", str(tmp_path))), r.stderr
    assert not out.exists()


def test_version_and_bare_command():
    from patchbench import __version__

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"patchbench {__version__}"
    r = run_cli(check=False)
    assert r.returncode == 0 and "train-model" in r.stdout and "reproduce" in r.stdout


def test_help_and_version_start_without_torch_or_pandas():
    """``patchbench --help`` answers at once: the CLI's start imports neither torch nor pandas (each command
    imports what its job needs); measured here as a user starts it, in a process of its own. Nor does a plugin's
    ``import patchbench.api`` (each name imports its module on first use)."""
    code = ("import sys, patchbench.cli, patchbench.api; heavy = sorted({'torch', 'torchvision', 'pandas', 'scipy'} & set(sys.modules)); "
            "print(heavy); sys.argv = ['patchbench', '--help']; patchbench.cli.main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[0] == "[]" and "train-model" in r.stdout


def registry(what: str) -> list[str]:
    from patchbench.attacks import ATTACKS
    from patchbench.data import DATASETS
    from patchbench.defenses import DEFENSES
    from patchbench.models import MODELS
    from patchbench.papers import PAPERS
    from patchbench.presets import preset_names
    from patchbench.reporting.lookup import all_tables
    from patchbench.training.objectives import objective_names

    return {"models": list(MODELS), "attacks": list(ATTACKS), "defenses": list(DEFENSES), "datasets": list(DATASETS),
            "presets": preset_names(), "papers": list(PAPERS), "tables": list(all_tables()),
            "figures": [f for p in PAPERS.values() for f in p.figures], "trainings": objective_names()}[what]


@pytest.mark.parametrize("what, some", [
    ("models", {"vgg16", "small_vgg", "resnet9"}), ("attacks", {"lavan", "adversarial_patch", "pgd", "npixel"}),
    ("defenses", {"none", "lgs", "slgs", "wlgs", "jpeg", "dw"}), ("datasets", {"fashion-mnist", "cifar10", "imagenet"}),
    ("presets", {"demo-fmnist", "icaart2022-vgg16", "tomm2022-mnist", "bmvc2023-cifar10", "advml2019-mnist"}),
    ("papers", {"icaart2022", "tomm2022", "bmvc2023", "advml2019"}), ("tables", {"icaart2022-1", "tomm2022-7", "advml2019-fig2"}),
    ("figures", {"lambda-curve", "adaptive", "bmvc2023-fig2"}), ("trainings", {"raw", "madry", "alp+aad", "lat"}),
])
def test_list_every_registry(what, some):
    """One row per registered name, in registry order (a wrapped description adds rows with an empty first cell)."""
    r = run_cli("list", what)
    first = [line.split("│")[1].strip() for line in r.stdout.splitlines() if line.startswith("│")]
    assert [n for n in first if n] == registry(what) and some <= set(registry(what))
