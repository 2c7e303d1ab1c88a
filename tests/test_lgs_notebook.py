"""LGS through `patchbench defend` against the reference notebook's own code.

The ICAART paper cites metallurk/local_gradients_smoothing; its ``lgs.ipynb`` (cell 4) defines
``get_gx``, ``get_gradient`` and ``apply_gradient``. They are restated below as written, with
two changes only: ``device`` is the tensor's, and the padding is applied per axis (the notebook
builds its padding list as (rows, cols) and hands it to ``F.pad``, which reads (cols, rows), and
calls ``F.fold`` with ``output_size=(H, W)`` after naming the axes ``B, C, W, H``: identical for
square images, transposed for non-square ones). Each image is its own batch, so the notebook's
batch-wide min/max is the per-image one patchbench uses.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import run_cli


def get_gx(tensor):
    B, C, W, H = tensor.shape
    sobelx = torch.tensor([[1, 0, -1], [2, 0, -2], [1, 0, -1]], device=tensor.device).float()
    sobely = sobelx.T

    G_x = F.conv2d(tensor.view(-1, 1, W, H), sobelx.view((1, 1, 3, 3)), padding=1).view(B, C, W, H)
    G_y = F.conv2d(tensor.view(-1, 1, W, H), sobely.view((1, 1, 3, 3)), padding=1).view(B, C, W, H)

    G = torch.sqrt(torch.pow(G_x, 2) + torch.pow(G_y, 2)).float()

    gx = (G - G.min()) / (G.max() - G.min())
    return gx


def get_gradient(tensor, block_size=15, overlap=5, threshold=0):
    stride = block_size - overlap
    padding = []
    for v in tensor.shape[-2:]:
        left = v % stride
        if left <= overlap:
            need = overlap
        else:
            need = block_size
        pad = need - left
        padding.append(int(pad / 2))
        padding.append(pad - padding[-1])
    padding = padding[2:] + padding[:2]  # per axis: F.pad takes (cols, rows)

    tensor = F.pad(tensor, tuple(padding))

    B, C, H, W = tensor.shape  # (the notebook: B, C, W, H; equal for square images)

    patches = tensor.unfold(2, block_size, stride).unfold(3, block_size, stride)
    mask = ((patches.sum([1, -2, -1]) / torch.prod(torch.tensor(patches.shape)[[1, -2, -1]])) >= threshold).float().unsqueeze(1).unsqueeze(-1).unsqueeze(-1)

    def fold(x):
        x = x * mask
        x = x.contiguous().view(B, C, -1, block_size * block_size).permute(0, 1, 3, 2)
        x = x.contiguous().view(B, C * block_size * block_size, -1)
        return F.fold(x, output_size=(H, W), kernel_size=block_size, stride=stride)

    ox = torch.ones_like(patches)
    r = fold(patches) / fold(ox)
    r = F.pad(r, tuple(-i for i in padding))
    r[r != r] = 0
    return r


def apply_gradient(img, grad, smooth_factor=2.3):
    t = 1 - grad * smooth_factor
    clipped = torch.clip(t, 0, 1)
    return torch.mul(img, clipped)


def lgs(tensor, threshold=0.2, smooth_factor=2.3, block_size=15, overlap=5):
    return apply_gradient(tensor, get_gradient(get_gx(tensor), block_size=block_size, overlap=overlap, threshold=threshold), smooth_factor=smooth_factor)


def picture(h, w, channels, seed):
    """A smooth gradient with a noise square (a patch): windows on the square are kept, windows
    on the smooth part are not — and windows straddling both decide the notebook's semantics."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = 60 + 120 * yy * xx + rng.integers(0, 4, (h, w))
    img = np.repeat(base[..., None], channels, axis=2)
    t, left = h // 3, w // 2
    img[t:t + 40, left:left + 40] = rng.integers(0, 256, (40, 40, channels))
    img = img.clip(0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


@pytest.mark.parametrize("h,w,channels", [(120, 150, 3), (96, 96, 3), (120, 150, 1), (130, 97, 1)])
def test_defend_equals_the_notebook(tmp_path, h, w, channels):
    arr = picture(h, w, channels, seed=h + w)
    Image.fromarray(arr).save(tmp_path / "in.png")
    for average, name in (("kept", "default"), ("all", "all")):
        params = ["--param", "window=15", "--param", "overlap=5", "--param", "threshold=0.2"]
        if average == "all":
            params += ["--param", "window_average=all"]
        run_cli("defend", tmp_path / "in.png", "--lam", "2.3", *params, "--out", tmp_path / name)
    x = torch.from_numpy(arr).float().div(255)
    x = x[None, None] if channels == 1 else x.permute(2, 0, 1)[None]
    g = get_gradient(get_gx(x), 15, 5, 0.2)
    inner = g[..., 20:-20, 20:-20]
    assert (inner == 0).float().mean() > 0.1 and (inner > 0).float().mean() > 0.1  # kept and dropped windows
    ref = (lgs(x) * 255).round().squeeze(0)
    ref = ref[0] if channels == 1 else ref.permute(1, 2, 0)
    ours = torch.from_numpy(np.asarray(Image.open(tmp_path / "default" / "in.png")).astype(np.float32))
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= 2
    # the other averaging differs visibly on the same images: the test tells the two apart
    other = torch.from_numpy(np.asarray(Image.open(tmp_path / "all" / "in.png")).astype(np.float32))
    assert (other - ref).abs().max() > 20
