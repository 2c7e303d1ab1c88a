"""ImageNet-Patch (issue 35 item 2): its published file format read without running code, a malicious
pickle in its place refused before anything in it runs, its published placement equal to torchvision's
``affine`` as the reference repository applies it, and the ``imagenet-patch-transfer`` preset on
stand-ins (a file the test writes in the published format, random-init torchvision models, tiny images)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import pickletools

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from conftest import cells, make_image_folder, run_cli, sets
from patchbench.attacks.affine_placement import AffinePlacement
from patchbench.data.imagenet_patch import ALLOWED, read
from patchbench.data.safe_pickle import UnsafePickle
from patchbench.errors import PatchbenchError

NAMES = {804: "soap dispenser", 513: "cornet", 923: "plate"}


def write_published_format(path, canvas=64, size=16, n=3, seed=0):
    """(patches, targets, info) as the published file holds them: torch tensors pickled with plain pickle
    (the canvas zero outside the centre box, float32 targets), gzip'd."""
    g = torch.Generator().manual_seed(seed)
    patches = torch.zeros(n, 3, canvas, canvas)
    lo = canvas // 2 - size // 2
    patches[:, :, lo:lo + size, lo:lo + size] = torch.rand(n, 3, size, size, generator=g)
    targets = torch.tensor(list(NAMES)[:n], dtype=torch.float32)
    info = {"patch_size": size, "target_names": NAMES, "patch_type": "square", "input_shape": (3, canvas, canvas)}
    with gzip.open(path, "wb") as f:
        pickle.dump((patches, targets, info), f)
    return patches, targets


def test_a_file_of_the_published_format_loads(tmp_path):
    patches, targets = write_published_format(tmp_path / "p.gz")
    s = read(tmp_path / "p.gz")
    assert torch.equal(s.patches, patches[:, :, 24:40, 24:40]) and s.targets == [804, 513, 923]
    assert s.names == NAMES and s.patch_size == 16 and s.canvas == 64
    # the allow list is exactly the globals such a file names (read from its opcodes, nothing run)
    ops = list(pickletools.genops(gzip.decompress((tmp_path / "p.gz").read_bytes())))
    strings = [arg for op, arg, _ in ops if op.name in ("SHORT_BINUNICODE", "BINUNICODE")]
    named = {(strings[i], strings[i + 1]) for i in range(len(strings) - 1) if (strings[i], strings[i + 1]) in ALLOWED}
    assert named == set(ALLOWED)


class System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_malicious_pickle_in_its_place_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    with gzip.open(tmp_path / "evil.gz", "wb") as f:  # code instead of the tuple
        pickle.dump(System(f"touch {marker}"), f)
    with pytest.raises(UnsafePickle, match="posix.system refused|os.system refused"):
        read(tmp_path / "evil.gz")
    # code hidden in a tensor's storage bytes: torch.storage._load_from_bytes would torch.load it unrestricted
    inner = io.BytesIO()
    pickle.dump(System(f"touch {marker}"), inner, protocol=2)

    class Storage:
        def __reduce__(self):
            return torch.storage._load_from_bytes, (inner.getvalue(),)

    with gzip.open(tmp_path / "evil2.gz", "wb") as f:
        pickle.dump((Storage(), torch.zeros(1), {"patch_size": 1}), f)
    with pytest.raises(UnsafePickle, match="weights_only"):
        read(tmp_path / "evil2.gz")
    assert not marker.exists()
    # through the command line: one error line, exit code 2, nothing run
    root = make_image_folder(tmp_path / "data", per_class=1, size=8)
    r = run_cli("sweep", "--preset", "imagenet-patch-transfer", "--set", f"imagenet_patch.file={tmp_path / 'evil.gz'}",
                "--data-root", root, "--results", tmp_path / "results", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "refused, nothing in it was run" in r.stderr
    assert not (tmp_path / "results").exists()  # nothing written
    assert not marker.exists()
    with pytest.raises(PatchbenchError, match="not a gzip file"):
        (tmp_path / "plain").write_bytes(b"not gzip")
        read(tmp_path / "plain")


def test_affine_placement_is_torchvisions_affine_as_the_reference_applies_it():
    """Per image: F.affine(canvas, angle, (tx, ty), scale, shear 0, NEAREST, fill 0) of the patch and of its
    mask, then x·[m' = 0] + δ'·m' (the reference's ApplyPatch.forward), equal to the batched placement."""
    place = AffinePlacement(seed=3)
    for h, s, n in ((224, 50, 16), (33, 10, 40)):
        x = torch.rand(n, 3, h, h, generator=torch.Generator().manual_seed(h))
        pixels = torch.rand(3, s, s, generator=torch.Generator().manual_seed(s))
        idx = torch.arange(500, 500 + n)
        ours = place.paste(x, pixels, torch.ones(1, s, s), idx)
        angle, tx, ty, scale = place.params(idx, h)
        top = h // 2 - s // 2
        canvas, mask = torch.zeros(3, h, h), torch.zeros(3, h, h)
        canvas[:, top:top + s, top:top + s], mask[:, top:top + s, top:top + s] = pixels, 1
        for i in range(n):
            args = (float(angle[i]), [int(tx[i]), int(ty[i])], float(scale[i]), [0.0, 0.0])
            d = TF.affine(canvas, *args, interpolation=InterpolationMode.NEAREST, fill=[0.0] * 3)
            m = TF.affine(mask, *args, interpolation=InterpolationMode.NEAREST, fill=[0.0] * 3)
            inv = torch.zeros_like(m)
            inv[m == 0] = 1
            assert torch.equal(x[i] * inv + d * m, ours[i]), (h, i)
    # RandomAffine.get_params' laws: angle in ±45, whole-pixel translation within ±0.2·W, scale in [0.5, 1]
    angle, tx, ty, scale = place.params(torch.arange(5000), 224)
    assert np.abs(angle).max() <= 45 and np.abs(angle).max() > 44 and np.all(tx == np.round(tx))
    assert np.abs(tx).max() <= 45 and np.abs(ty).max() == 45 and scale.min() >= 0.5 and scale.max() <= 1
    assert abs(np.mean(scale) - 0.75) < 0.01 and abs(np.mean(angle)) < 1.5  # uniform


STAND_IN = sets(model__weights="null", data__image_size=64, data__eval_n=0, data__batch_size=2, data__num_workers=0,
                imagenet_patch__models="[alexnet,resnet18]", imagenet_patch__patches="[0,1]",
                defenses__7__max_iter=5, defenses__8__inpaint_iter=5, defenses__9__patch_px=23, defenses__9__k=2)


@pytest.mark.slow
def test_the_preset_runs_on_stand_ins(tmp_path, one_thread):
    """`reproduce imagenet_patch2023 --preset-scale paper`: the paper-scale preset (every defense) through the code a GPU
    user runs, on stand-ins: the published file format written here (64 px canvas, 16 px patches), random-init AlexNet and
    ResNet-18, a 2-image ImageFolder."""
    root = make_image_folder(tmp_path / "data", per_class=1, size=64)
    write_published_format(tmp_path / "patches.gz")
    results, out = tmp_path / "results", tmp_path / "reports"
    missing = run_cli("reproduce", "imagenet_patch2023", "--preset-scale", "paper", "--data-root", root, "--results", results,
                      "--allow-cpu", *STAND_IN, check=False)  # without the file: the preflight names it, writes nothing
    assert missing.returncode == 2 and "ImageNet-Patch file" in missing.stderr and not results.exists()
    run_cli("reproduce", "imagenet_patch2023", "--preset-scale", "paper", "--data-root", root, "--results", results,
            "--out", out, "--no-progress", "--allow-cpu", *STAND_IN, *sets(imagenet_patch__file=tmp_path / "patches.gz"))
    df = cells(results)
    from patchbench.defenses import DEFENSES

    assert set(df["model"]) == {"alexnet", "resnet18"} and set(df["defense"]) == set(DEFENSES)
    att = df[df["condition"] == "attacked"]
    assert set(att["attack"]) == {"imagenet-patch"} and set(att["patch_index"]) == {0, 1} and set(att["target"]) == {804, 513}
    assert set(att["placement"]) == {"affine(t0.2,r45,s0.5-1)+s0"} and set(att["patch_px"]) == {16}
    assert len(df) == 2 * 3 * len(DEFENSES)  # models × (clean + 2 patches) × (none + every defense)
    summary = (out / "imagenet-patch-transfer.md").read_text()
    assert "| alexnet  | patchcleanser" in summary and "| resnet18 | none" in summary
    per_patch = (out / "imagenet-patch-per-patch.md").read_text()
    assert "38.00" in per_patch and "imagenet_patch_example.ipynb" in per_patch  # the repository's AlexNet / patch 1 row
