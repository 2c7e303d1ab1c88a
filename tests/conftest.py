import os
from pathlib import Path

import pytest
import torch
import yaml

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory):
    """No test touches the network or the user's caches."""
    cache = tmp_path_factory.mktemp("pbcache")
    os.environ["PATCHBENCH_CACHE"] = str(cache)
    os.environ["PATCHBENCH_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(cache / "torch")
    torch.set_num_threads(min(2, torch.get_num_threads()))
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
    raw = yaml.safe_load((Path(__file__).parents[1] / "patchbench/presets/demo-fmnist.yaml").read_text())
    raw["name"] = over.pop("name", "tiny-fmnist")
    # the spine's shape: one LaVAN attack, LGS only (the ICAART extras have their own tests)
    raw["attacks"], raw["defenses"] = raw["attacks"][:1], raw["defenses"][:1]
    raw.pop("adaptive", None)
    raw["data"].update(image_size=32, eval_n=300, batch_size=150)
    raw["model"]["train"].update(epochs=1, train_n=3000, batch_size=100)
    raw["attacks"][0].update(sizes=[6, 8], steps=15, batch_size=32, train_pool=500, success_n=100)
    raw["defenses"][0]["lambdas"] = "1.5:2.3"
    for k, v in over.items():
        sect, key = k.split("__")
        raw[sect][key] = v
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def one_thread():
    """Tiny convolutions run far faster on one thread (and on a shared 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def quadrant_data(n, size=12, seed=0, amp=0.5):
    """4 classes: a brighter quadrant (+amp) on uniform [0, 0.5] noise; float images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * 0.5
    h = size // 2
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += amp
    return x.clamp(0, 1), y
