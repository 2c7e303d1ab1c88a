from __future__ import annotations

import contextlib
import gc
import pickle
import io
import os
import subprocess
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from PIL import Image
from xdist_groups import pytest_collection_finish  # noqa: F401  (a hook: --dist loadgroup's groups on pytest >= 9.2)

if TYPE_CHECKING:
    import pandas as pd

# torch and pandas are imported where a helper or fixture uses them, not here: xdist's controller process loads
# this file before it starts the workers and runs no test, and importing torch there took 2.4 s of every run's wall
# time before the first worker started (the workers import both while they collect the test modules)

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def xdist_workers() -> int:
    """How many test processes share the machine: pytest-xdist's workers (``make test``: ``-n auto``, one per
    core), else 1."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


# torch's intra-op threads of this test process: the cores divided among xdist's workers (2 workers on 2 cores:
# one thread each, none waiting for a core the other worker holds), at most 2 (tiny tensors gain nothing from more)
THREADS = max(1, min(2, (os.cpu_count() or 1) // xdist_workers()))


# Python's cycle collector, tuned for a test process: it runs less often (after 10 000 net allocations instead of 700;
# the older generations after 20 younger runs instead of 10), from here on: collecting the tests imports torch,
# pandas and every test module, and with the default thresholds 7 full collections of that growing heap took 0.8 s of
# each worker's 7 s collection (its collections take 0.4 s now; what the full ones found: ~150 unreachable objects)
gc.set_threshold(10_000, 20, 20)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """What collection imported (most of the heap) is frozen out of the cycle collector's scans before the tests
    run: a worker's collections took 3-4 s of a test-fast run, now under 2 s. Nothing else changes (it returns None:
    pytest's own loop runs the tests)."""
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory):
    """No test touches the network or the user's caches; torch runs on this process's share of the cores
    (:data:`THREADS`), and so do the CLI subprocesses it starts (``OMP_NUM_THREADS``, under xdist only)."""
    import torch

    cache = tmp_path_factory.mktemp("pbcache")
    os.environ["PATCHBENCH_CACHE"] = str(cache)
    os.environ["PATCHBENCH_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(cache / "torch")
    if xdist_workers() > 1:
        os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(min(THREADS, torch.get_num_threads()))
    yield


def fmnist_root() -> str | None:
    if FMNIST_DIR.is_dir():
        return str(FMNIST_DIR)
    env = os.environ.get("PATCHBENCH_DATA")
    return env


needs_fmnist = pytest.mark.skipif(
    fmnist_root() is None,
    reason="Fashion-MNIST IDX files not found (apt-get install dataset-fashion-mnist or set PATCHBENCH_DATA)",
)


def tiny_preset(path: Path, **over) -> Path:
    """A minutes-scale copy of the demo preset: small eval set, 1 epoch on a subset, few patch steps."""
    raw = yaml.safe_load((Path(__file__).parents[1] / "patchbench/papers/icaart2022/presets/demo-fmnist.yaml").read_text())
    raw["name"] = over.pop("name", "tiny-fmnist")
    # the spine's shape: one LaVAN attack, LGS only (the ICAART extras have their own tests)
    raw["attacks"], raw["defenses"] = raw["attacks"][:1], raw["defenses"][:1]
    raw.pop("adaptive", None)
    raw.pop("patch-optimality", None)
    raw["data"].update(image_size=32, eval_n=300, batch_size=150)
    raw["model"]["train"].update(epochs=1, train_n=3000, batch_size=100, test_n=1000)  # test accuracy on 1000 test images
    raw["attacks"][0].update(sizes=[6, 8], steps=15, batch_size=32, train_pool=500, success_n=100, seeds=[], restarts=1)
    raw["defenses"][0]["lambdas"] = "1.5:2.3"
    for k, v in over.items():
        sect, key = k.split("__")
        raw[sect][key] = v
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def one_thread():
    """Tiny convolutions run far faster on one thread (and on a shared 2-core box)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def quadrant_data(n, size=12, seed=0, amp=0.5):
    """4 classes: a brighter quadrant (+amp) on uniform [0, 0.5] noise; float images in [0, 1]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * 0.5
    h = size // 2
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += amp
    return x.clamp(0, 1), y


# --------------------------------------------------------------------------------------------
# the CLI, in-process (fast: no torch import per call) and as a subprocess (like a user)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, check=True) -> CliResult:
    """``patchbench ARGS`` in this process: the real entry point (``main``), its exit code and output."""
    from patchbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["patchbench", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    r = CliResult(code, out.getvalue(), err.getvalue())
    if check and r.returncode != 0:
        raise AssertionError(f"patchbench {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def pb(*args, check=True, **kw) -> subprocess.CompletedProcess:
    """``python -m patchbench ARGS`` as a subprocess (end-to-end, or where a process must be killed)."""
    proc = subprocess.run([sys.executable, "-m", "patchbench", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"patchbench {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def cells(results: Path) -> pd.DataFrame:
    """Every stored cell (each file must be readable), sorted by run id."""
    import pandas as pd

    files = sorted((results / "cells").glob("*"))
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values("run_id").reset_index(drop=True)


def make_image_folder(root, classes=("n01440764", "n01443537"), per_class=3, size=400):
    """A synthetic ImageNet in ImageFolder layout (train/ and val/), random JPEGs."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{c}_{i}.JPEG", format="JPEG")
    return root


def write_idx(folder, split, n, size=28, classes=10, seed=0):
    """Synthetic MNIST-style IDX files (images + labels) of one split, random pixels."""
    rng = np.random.default_rng(seed)
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    images = (rng.random((n, size, size)) * 255).astype(np.uint8)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / names[0]).write_bytes(struct.pack(">IIII", 0x803, n, size, size) + images.tobytes())
    (folder / names[1]).write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def write_cifar(root, n=60, seed=0):
    """Synthetic CIFAR-10 in the official python archive layout (pickled batches), random pixels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": (rng.random((n, 3 * 32 * 32)) * 255).astype(np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return root


def corner_model(target=2, size=16):
    """A tiny model whose target logit reads the top-right corner: the attack must find it."""
    import torch
    import torch.nn as nn

    from patchbench.models import Classifier

    class Net(nn.Module):
        def forward(self, x):
            corner = x[:, :, :4, -4:].mean((1, 2, 3))
            logits = torch.zeros(len(x), 3)
            logits[:, 0] = 0.5
            logits[:, target] = 4 * (corner - 0.6)
            return logits

    net = Net()
    net.dummy = nn.Parameter(torch.zeros(1), requires_grad=False)
    return Classifier(net, mean=(0.0,), std=(1.0,), name="corner", class_names=["a", "b", "c"], image_size=size)


def write_cifar100(root, n=(60, 30), seed=0):
    """Synthetic CIFAR-100 in the official archive layout (train / test pickles, fine labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, k in zip(("train", "test"), n):
        batch = {"data": (rng.random((k, 3 * 32 * 32)) * 255).astype(np.uint8), "fine_labels": rng.integers(0, 100, k).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return root


# --------------------------------------------------------------------------------------------
# every paper's demo at tiny scale: the code path, not the numbers


def sets(**values) -> list[str]:
    """``--set key=value`` arguments; ``__`` in a name stands for ``.`` (``data__eval_n=30``)."""
    return [a for k, v in values.items() for a in ("--set", f"{k.replace('__', '.')}={v}")]


def tomm_sets(n_train=200, batch=50, eval_n=60, steps=(2, 3)) -> list[str]:
    """TOMM 2022: one epoch on a few images, short attacks."""
    return sets(model__train__train_n=n_train, model__train__epochs=1, model__train__batch_size=batch,
                model__train__attack_steps=2, data__eval_n=eval_n, data__batch_size=eval_n,
                evasion=f"[{{name: fgsm, eps: 0.1}}, {{name: pgd, eps: 0.1, steps: {steps[0]}}}, "
                        f"{{name: pgd, eps: 0.1, steps: {steps[1]}}}, {{name: cw, eps: 0.1, steps: {steps[0]}}}]")


def _icaart_attack(i, size, seeds, restarts):
    return {f"attacks__{i}__{k}": v for k, v in dict(sizes=f"[{size}]", steps=10, batch_size=32, train_pool=400, success_n=50,
                                                     seeds=seeds, restarts=restarts, select_n=50).items()}


# every trained model's test accuracy (its metadata) on 1000 of the 10000 test images: no test reads it, and on
# the whole test split it was 46 s of the TOMM demo's 73 (seven LeNets)
TEST_N = sets(model__train__test_n=1000)

DEMO_SETS = {
    "icaart2022": TEST_N + sets(data__image_size=32, data__eval_n=200, data__batch_size=100, data__ssim_n=50, model__train__epochs=1,
                       model__train__train_n=2000, model__train__batch_size=100, **_icaart_attack(0, 6, "[0,1]", 1),
                       **_icaart_attack(1, 8, "[0]", 2), **{f"defenses__{i}__lambdas": "[2.3,3.5]" for i in range(3)},
                       adaptive__steps=4, adaptive__record_every=2, adaptive__size=6, certified__n=50,
                       # PatchCleanser's Cutout fine-tune on 2000 images (the model's own train_n), its adaptive LaVAN 4 steps
                       certified__model__train_n=2000, certified__adaptive_steps=4,
                       **{"patch-optimality.sizes": "[6,8]", "patch-optimality.adaptive_steps": 4}),
    # two training seeds for Madry and Madry+AAD (the demo preset runs one; several seeds are the rule's point)
    "tomm2022": TEST_N + tomm_sets() + sets(training_seeds="{madry: [0, 1], madry+aad: [0, 1]}"),
    "bmvc2023": TEST_N + sets(data__eval_n=30, data__batch_size=30, model__train__train_n=600, model__train__epochs=1,
                     model__train__batch_size=50, volumetric__validation_n=10, volumetric__validation_population=6,
                     volumetric__validation_iterations=1,
                     **{f"attacks__{i}__{k}": v for i in range(3) for k, v in (("steps", 3), ("train_pool", 200), ("success_n", 50))},
                     evasion__0__params__max_pixels=20,  # Foolbox's single_pixel; 1: multiple_pixels (N tries)
                     evasion__1__params__pixels=8,
                     volumetric__train__epochs=1),
    "advml2019": TEST_N + sets(model__train__train_n=600, model__train__epochs=1, model__train__attack_steps=2, data__eval_n=80,
                      data__batch_size=80, evasion__0__steps=3, evasion__1__steps=3),
}


@pytest.fixture(scope="session")
def paper_demo(tmp_path_factory):
    """``paper_demo(name)``: ``reproduce NAME --preset-scale demo`` with :data:`DEMO_SETS`, run once per
    session and shared by every test that reads it: (results, reports)."""
    runs = {}

    def run(paper: str) -> tuple[Path, Path]:
        if paper not in runs:
            results = tmp_path_factory.mktemp(paper) / "results"
            run_cli("reproduce", paper, "--preset-scale", "demo", "--results", results, "--out", results / "reports",
                    "--no-progress", *DEMO_SETS[paper])
            runs[paper] = results, results / "reports"
        return runs[paper]

    return run


ICAART_TABLES = ["icaart2022-1", "icaart2022-2", "icaart2022-3", "icaart2022-4", "icaart2022-ssim"]


def check_icaart_reports(out, presets, adaptive_presets):
    """Every ICAART table beside the paper, each preset's λ curve, the adaptive figure and table."""
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


@pytest.fixture
def two_threads():
    """A 224 px ResNet-50 / ViT in a module that runs on one thread otherwise: both cores (1.7× faster) when this
    process has them (under xdist, its share: :data:`THREADS`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP wake-ups on a busy machine (module-wide)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# parallel runs (pytest-xdist, `make test`: -n auto --dist loadgroup)

# module fixtures that run a sweep or train a model for several tests: the tests that use one run on one
# worker, so that it runs once per session, not once per worker (the groups reach xdist's scheduler on
# pytest >= 9.2 through tests/xdist_groups.py; tests/test_xdist_groups.py checks it)
SHARED_RUNS = ("swept", "clean", "two_processes", "tiny", "striped_model", "trained")


def demo_group(paper: str):
    """The mark of a test that reads ``paper_demo(paper)``: every such test on one worker, the demo run once."""
    return pytest.mark.xdist_group(f"paper_demo-{paper}")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Under xdist: a test using one of :data:`SHARED_RUNS` joins its module's group for it (an explicit
    ``xdist_group`` mark wins), and the slow end-to-end runs are handed out first (loadgroup hands out the
    groups, largest first, then single tests in this order), so that no long test starts last and leaves
    the other worker idle."""
    if xdist_workers() <= 1:
        return
    for item in items:
        shared = [f for f in SHARED_RUNS if f in item.fixturenames]
        if shared and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}-{shared[0]}"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the slow ones first, in order
