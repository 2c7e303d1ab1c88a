"""LGS through `patchbench defend` against the reference notebook's own code.

The ICAART paper cites metallurk/local_gradients_smoothing; its ``lgs.ipynb`` (cell 4) defines
``get_gx``, ``get_gradient`` and ``apply_gradient``. They are restated in
``benchmarks/lgs_notebook.py`` as written (two documented changes: the tensor's device, per-axis
padding), one copy shared with the speed benchmark. Each image is its own batch, so the notebook's
batch-wide min/max is the per-image one patchbench uses.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from lgs_notebook import get_gradient, get_gx, lgs  # noqa: E402


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
