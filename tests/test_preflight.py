"""`reproduce`'s preflight: every missing piece (GPU, dataset, weight file, disk) named with its fix,
exit code 2 and nothing written; stand-ins make each piece present and it disappears from the list."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import make_image_folder, needs_fmnist, run_cli, write_cifar, write_cifar100, write_idx
from patchbench.runner import preflight
from patchbench.errors import PatchbenchError
from patchbench.papers import PAPERS, get_paper
from patchbench.presets import load_preset
from patchbench.runner.reproduce import paper_names

ROOT = Path(__file__).resolve().parents[1]


def plan(scale: str, papers=None) -> dict:
    return {n: [load_preset(p) for p in get_paper(n).scale(scale)] for n in papers or PAPERS}


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """No dataset, no weights: empty caches and no data variables."""
    monkeypatch.setenv("PATCHBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("PATCHBENCH_DATA", "PATCHBENCH_IMAGENET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("patchbench.data.readers.DEBIAN_FASHION_DIR", str(tmp_path / "no-debian"))


def test_paper_scale_without_gpu_or_data_names_every_piece_and_writes_nothing(no_data, tmp_path):
    results = tmp_path / "results"
    r = run_cli("reproduce", "all", "--preset-scale", "paper", "--results", results, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: preflight:")
    for paper in PAPERS:
        assert f"  {paper} " in r.stderr
    for piece in ("imagenet", "mnist", "cifar10", "cifar100", "vgg16-397923af.pth", "inception_v3_google-0cc3c7bd.pth",
                  "resnet50-0676ba61.pth", "IMAGENET=DIR make reproduce-tables", "PATCHBENCH_DATA=DIR",
                  "alexnet-owt-7be5be79.pth", "ImageNet-Patch file", "imagenet_patch.gz"):
        assert piece in r.stderr, piece
    if not torch.cuda.is_available():
        assert "sees no CUDA device" in r.stderr and "--allow-cpu" in r.stderr
    assert not results.exists() and not (tmp_path / "cache").exists()


def test_allow_cpu_drops_only_the_gpu(no_data, tmp_path):
    strict = preflight.find_missing(plan("paper"), "paper", tmp_path, allow_cpu=False)
    lenient = preflight.find_missing(plan("paper"), "paper", tmp_path, allow_cpu=True)
    assert [m for m in strict if m.label != "GPU"] == lenient
    assert all(m.label != "GPU" for m in lenient)
    assert ("GPU" in {m.label for m in strict}) == (not torch.cuda.is_available())


def test_each_piece_present_on_stand_ins_leaves_nothing_missing(no_data, tmp_path, monkeypatch):
    """ImageNet as an ImageFolder, MNIST / CIFAR under $PATCHBENCH_DATA, the weight files in torch's cache."""
    data = tmp_path / "data"
    make_image_folder(tmp_path / "imagenet", per_class=1, size=16)
    for split in ("train", "test"):
        write_idx(data / "mnist", split, 10)
    write_cifar(data / "cifar10", n=4)
    write_cifar100(data / "cifar100", n=(4, 4))
    monkeypatch.setenv("PATCHBENCH_IMAGENET", str(tmp_path / "imagenet"))
    monkeypatch.setenv("PATCHBENCH_DATA", str(data))
    everything = plan("paper")
    from torchvision.models import get_model_weights

    (data / "imagenet_patch.gz").write_bytes(b"")  # ImageNet-Patch's published file, where $PATCHBENCH_DATA says
    placed = set()  # weight files an earlier preset's step placed (presets share them: DEFAULT = IMAGENET1K_V2)
    # every model a preset runs: a paper's experiment over several models checks each (Paper.variants)
    for p in (v for presets in everything.values() for p in presets for v in get_paper(p.paper).variants(p)):
        if p.model.weights not in (None, "scratch"):
            enum = get_model_weights(p.model.arch)
            url = (enum.DEFAULT if p.model.weights == "DEFAULT" else enum[p.model.weights]).url
            if url in placed:
                assert preflight.check_weights(p) is None
                continue
            placed.add(url)
            target = preflight.check_weights(p)
            assert target is not None and "or --set model.weights=PATH" in target[1]
            path = Path(target[0].split(": ", 1)[1].split(" (preset")[0])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            assert preflight.check_weights(p) is None
    # the disk check compares with this machine's free space: tested on its own in test_a_weights_path_and_the_disk
    monkeypatch.setattr(preflight, "free_bytes", lambda path: 1 << 50)
    # the synthetic CIFAR batches are present but not the official files (MD5s): listed with the fix ...
    unofficial = preflight.find_missing(everything, "paper", tmp_path, allow_cpu=True)
    assert {m.label for m in unofficial} == {"cifar10", "cifar100"}
    assert all("is not the official" in m.what and "data.verify: false" in m.fix for m in unofficial)
    # ... and gone once they are (torchvision's MD5 lists pointed at them, hashed by hashlib)
    import torchvision.datasets

    for tv, folder in ((torchvision.datasets.CIFAR10, data / "cifar10" / "cifar-10-batches-py"),
                       (torchvision.datasets.CIFAR100, data / "cifar100" / "cifar-100-python")):
        for attr in ("train_list", "test_list"):
            monkeypatch.setattr(tv, attr, [[f, hashlib.md5((folder / f).read_bytes()).hexdigest()] for f, _ in getattr(tv, attr)])
    assert preflight.find_missing(everything, "paper", tmp_path, allow_cpu=True) == []
    # the loaders read what the probes found: CIFAR from $PATCHBENCH_DATA too
    from patchbench.data import load_split

    assert len(load_split("cifar10", None, "test", verify=False)) == 4  # synthetic batches: not the official MD5s
    assert len(load_split("cifar100", None, "train", verify=False)) == 4


def test_a_weights_path_and_the_disk(no_data, tmp_path, monkeypatch):
    p = load_preset("icaart2022-vgg16", [f"model.weights={tmp_path / 'vgg.pth'}"])
    assert "vgg.pth" in preflight.check_weights(p)[0]
    (tmp_path / "vgg.pth").write_bytes(b"")
    assert preflight.check_weights(p) is None
    assert preflight.disk_estimate(p) > 2 * 4 * 138_000_000  # the model and one temporary copy  # VGG16's 138M parameters, counted on the meta device
    monkeypatch.setattr(preflight, "free_bytes", lambda path: 0)
    missing = preflight.find_missing({"icaart2022": [p]}, "paper", tmp_path, allow_cpu=True)
    assert [m.label for m in missing if m.label == "disk"] == ["disk"]
    with pytest.raises(PatchbenchError, match="nothing was run or written"):
        preflight.preflight({"icaart2022": [p]}, "paper", tmp_path, allow_cpu=True)


@needs_fmnist
def test_demo_scale_is_ready_here(tmp_path):
    assert preflight.find_missing(plan("demo"), "demo", tmp_path, allow_cpu=False) == []


def test_paper_names():
    assert paper_names("all") == list(PAPERS)
    assert paper_names(["tomm2022", "all"]) == ["tomm2022"] + [p for p in PAPERS if p != "tomm2022"]
    with pytest.raises(PatchbenchError, match="unknown paper"):
        paper_names(["icaart2022", "nope"])


def test_make_reproduce_tables_names_all_four_papers():
    for target, scale in (("reproduce-tables", "paper"), ("reproduce-tables-demo", "demo")):
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        if dry.returncode != 0 and "No rule" in dry.stderr:
            pytest.fail(dry.stderr)
        line = next(x for x in dry.stdout.splitlines() if "patchbench reproduce" in x)
        assert all(p in line for p in PAPERS) and f"--preset-scale {scale}" in line
        assert f"patchbench report --preset-scale {scale}" in dry.stdout
