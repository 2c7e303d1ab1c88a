import json

import pytest
import torch

from patchbench.attacks.patch import Patch, Placement, paste
from patchbench.errors import PatchbenchError


def test_paste_fixed_matches_formula():
    x = torch.rand(3, 2, 20, 20)
    d = torch.rand(2, 5, 5)
    m = torch.ones(1, 5, 5)
    top, left = Placement("top-right", 2).offset(20, 5)
    assert (top, left) == (2, 13)
    y = paste(x, d, m, top, left)
    full_m = torch.zeros(1, 1, 20, 20)
    full_m[..., 2:7, 13:18] = 1
    full_d = torch.zeros(1, 2, 20, 20)
    full_d[..., 2:7, 13:18] = d
    torch.testing.assert_close(y, (1 - full_m) * x + full_m * full_d)  # Eq. 3


def test_paste_per_image_offsets_equal_single_pastes():
    x = torch.rand(4, 3, 16, 16)
    d = torch.rand(3, 4, 4, requires_grad=True)
    m = torch.ones(1, 4, 4)
    top, left = torch.tensor([0, 3, 12, 5]), torch.tensor([12, 0, 7, 5])
    y = paste(x, d, m, top, left)
    for i in range(4):
        torch.testing.assert_close(y[i:i + 1], paste(x[i:i + 1], d, m, int(top[i]), int(left[i])))
    y.sum().backward()
    assert torch.allclose(d.grad, torch.full_like(d, 4.0))  # every image's copy gets gradient


def test_placements_and_fit():
    assert Placement("top-left", 1).offset(10, 3) == (1, 1)
    assert Placement("bottom-right", 1).offset(10, 3) == (6, 6)
    assert Placement("center").offset(10, 4) == (3, 3)
    with pytest.raises(PatchbenchError, match="a 6 px patch with margin 5 does not fit 10 px images"):
        Placement("top-right", 5).offset(10, 6)


def test_save_load_roundtrip(tmp_path):
    p = Patch(torch.rand(1, 6, 6), torch.ones(1, 6, 6), {"attack": "lavan", "target": 0, "placement": "top-right", "margin": 2})
    pt = p.save(tmp_path / "p")
    assert {f.name for f in tmp_path.iterdir()} == {"p.pt", "p.png", "p.json"}
    q = Patch.load(pt)
    assert torch.equal(q.pixels, p.pixels) and q.content_id() == p.content_id()
    assert json.loads((tmp_path / "p.json").read_text())["content_id"] == p.content_id()
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(q.apply(x), p.apply(x))


def test_corrupt_or_missing_patch_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(PatchbenchError, match="cannot read patch"):
        Patch.load(bad)
    with pytest.raises(PatchbenchError, match="not found"):
        Patch.load(tmp_path / "missing.pt")
    torch.save({"pixels": torch.rand(3, 4, 5), "mask": torch.ones(1, 4, 5)}, tmp_path / "odd.pt")
    with pytest.raises(PatchbenchError, match="unexpected shape"):
        Patch.load(tmp_path / "odd.pt")


def test_patch_file_refuses_pickled_code(tmp_path):
    """weights_only=True: a .pt carrying arbitrary objects is rejected, not executed."""
    torch.save({"pixels": torch.rand(1, 4, 4), "mask": torch.ones(1, 4, 4), "x": Placement()}, tmp_path / "evil.pt")
    with pytest.raises(PatchbenchError, match=r"cannot read patch file .*evil\.pt: UnpicklingError"):
        Patch.load(tmp_path / "evil.pt")
