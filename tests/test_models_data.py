import pytest
import torch

from patchbench.data import eval_indices, load_split
from patchbench.errors import PatchbenchError
from patchbench.models import MODELS, build_classifier
from patchbench.models.imagenet import weights_file

from conftest import make_image_folder, needs_fmnist


@pytest.mark.parametrize("arch,size", [("small_vgg", 64), ("lenet", 28)])
def test_small_models_take_unit_images(arch, size):
    m = build_classifier(arch, "fashion-mnist", image_size=size)
    x = torch.rand(3, 1, size, size)
    assert m(x).shape == (3, 10)
    # normalization lives inside the wrapper
    torch.testing.assert_close(m.normalize(x), (x - 0.2860) / 0.3530)


@pytest.mark.parametrize("arch,size", [("vgg16", 64), ("inception_v3", 80), ("resnet50", 64), ("efficientnet_b0", 64)])
def test_torchvision_models_random_init_stand_in(arch, size):
    assert MODELS[arch].pretrained
    m = build_classifier(arch, "imagenet", weights=None, image_size=size).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, size, size)).shape == (2, 1000)


def test_offline_weights_error_names_file_and_flag():
    with pytest.raises(PatchbenchError) as e:
        build_classifier("vgg16", "imagenet", weights="IMAGENET1K_V1")
    msg = str(e.value)
    assert weights_file("vgg16", "IMAGENET1K_V1").name in msg and "--weights PATH" in msg
    assert "vgg16-397923af.pth" in msg


def test_weights_from_a_state_dict_file(tmp_path):
    torch.manual_seed(0)
    src = build_classifier("resnet50", "imagenet")
    torch.save(src.net.state_dict(), tmp_path / "r50.pth")
    m = build_classifier("resnet50", "imagenet", weights=str(tmp_path / "r50.pth"))
    assert all(torch.equal(a, b) for a, b in zip(src.net.state_dict().values(), m.net.state_dict().values()))
    # built on the meta device and given the file's tensors: nothing left on meta, trainable, float32 from a half file
    assert all(p.requires_grad and not p.is_meta for p in m.net.parameters()) and not any(b.is_meta for b in m.net.buffers())
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in src.net.state_dict().items()}, tmp_path / "half.pth")
    half = build_classifier("resnet50", "imagenet", weights=str(tmp_path / "half.pth"))
    assert {p.dtype for p in half.net.parameters()} == {torch.float32}
    torch.testing.assert_close(half.net.fc.weight, src.net.fc.weight, atol=1e-3, rtol=1e-3)
    torch.save(build_classifier("resnet18", "imagenet").net.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(PatchbenchError, match="^weights do not fit resnet50: Error"):
        build_classifier("resnet50", "imagenet", weights=str(tmp_path / "r18.pth"))
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(PatchbenchError, match="cannot read weights"):
        build_classifier("resnet50", "imagenet", weights=str(tmp_path / "bad.pth"))


def test_eval_indices_fixed_and_seeded():
    a, b = eval_indices(1000, 100, 0), eval_indices(1000, 100, 0)
    assert torch.equal(a, b) and len(a.unique()) == 100 and torch.all(a[1:] > a[:-1])
    assert not torch.equal(a, eval_indices(1000, 100, 1))
    assert torch.equal(eval_indices(10, 0, 0), torch.arange(10))


@needs_fmnist
def test_fashion_mnist_from_debian_idx_files():
    src = load_split("fashion-mnist", None, "test")
    assert len(src) == 10000 and src.images.shape[1:] == (1, 28, 28)
    x = src.batch(torch.arange(4), 64, torch.device("cpu"))
    assert x.shape == (4, 1, 64, 64) and 0 <= x.min() and x.max() <= 1
    assert set(src.labels.tolist()) == set(range(10))


def test_missing_dataset_root_is_a_clear_error(tmp_path):
    with pytest.raises(PatchbenchError, match="does not exist"):
        load_split("fashion-mnist", str(tmp_path / "nope"), "test")
    with pytest.raises(PatchbenchError, match="not found"):
        load_split("fashion-mnist", str(tmp_path), "test")  # exists, holds no IDX files
    with pytest.raises(PatchbenchError, match=f"imagenet split folder {tmp_path / 'val'} does not exist"):
        load_split("imagenet", str(tmp_path), "val")  # no val/ folder inside


def test_imagenet_image_folder_stand_in(tmp_path):
    root = make_image_folder(tmp_path / "imagenet", size=120)
    src = load_split("imagenet", str(root), "val", image_size=64)
    assert len(src) == 6 and src.labels.tolist() == [0, 0, 0, 1, 1, 1]
    from patchbench.data import iterate

    batches = list(iterate(src, torch.arange(6), 64, 4, torch.device("cpu")))
    assert [b[1].shape for b in batches] == [(4, 3, 64, 64), (2, 3, 64, 64)]


@pytest.mark.parametrize("dtype, kind", [(">u1", 8), (">i1", 9), (">i2", 11), (">i4", 12), (">f4", 13), (">f8", 14)])
def test_idx_files_read_as_torchvisions_reader_reads_them(tmp_path, dtype, kind):
    """Our IDX reader against torchvision's (the reference it replaces) on every value type and rank,
    a truncated file refused by both."""
    import numpy as np
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    from patchbench.data.readers import read_idx_file

    rng = np.random.default_rng(kind)
    for shape in ((7,), (3, 5), (4, 3, 2)):
        values = (rng.random(shape) * 200 - (0 if dtype == ">u1" else 100)).astype(dtype)
        path = tmp_path / f"{kind}-{len(shape)}.idx"
        header = (kind * 256 + len(shape)).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
        path.write_bytes(header + values.tobytes())
        ours, theirs = read_idx_file(path), read_sn3_pascalvincent_tensor(str(path), strict=False)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
        path.write_bytes(header + values.tobytes()[:-1])
        with pytest.raises(Exception):
            read_sn3_pascalvincent_tensor(str(path), strict=False)
        with pytest.raises(Exception):
            read_idx_file(path)


@needs_fmnist
def test_the_debian_fashion_mnist_files_read_as_torchvision_reads_them(tmp_path):
    import gzip

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    from conftest import FMNIST_DIR
    from patchbench.data.readers import read_idx_file

    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        plain = FMNIST_DIR / name
        if not plain.exists():
            plain = tmp_path / name
            plain.write_bytes(gzip.open(FMNIST_DIR / f"{name}.gz").read())
        ours, theirs = read_idx_file(plain), read_sn3_pascalvincent_tensor(str(plain), strict=False)
        assert ours.dtype == theirs.dtype == torch.uint8 and torch.equal(ours, theirs)


def test_a_model_that_needs_no_training_is_built_once_per_process(tmp_path):
    """Every stage of a preset asks for its pretrained (here random-init) model: one build, the same module, torch's
    generator where a fresh build leaves it; a model whose weights a caller changed is built again."""
    from patchbench.cache.models import ensure_model, fresh_model, state_id
    from patchbench.presets import load_preset
    from patchbench.store.results import ResultStore

    cpu = torch.device("cpu")
    preset = load_preset("icaart2022-vgg16", ["model.weights=null", "model.arch=resnet18"])
    first = ensure_model(preset, ResultStore(tmp_path), cpu)
    after_build = torch.get_rng_state()
    torch.rand(3)  # the generator moves on between stages
    again = ensure_model(preset, ResultStore(tmp_path), cpu)
    assert again.model is first.model and again.model_id == first.model_id and not again.model.net.fc.weight.requires_grad
    assert torch.equal(torch.get_rng_state(), after_build)
    assert state_id(fresh_model(preset, cpu)) == first.model_id and torch.equal(torch.get_rng_state(), after_build)
    with torch.no_grad():
        first.model.net.fc.bias.add_(1.0)
    rebuilt = ensure_model(preset, ResultStore(tmp_path), cpu)
    assert rebuilt.model is not first.model and rebuilt.model_id == again.model_id
