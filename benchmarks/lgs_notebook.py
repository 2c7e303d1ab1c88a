"""The LGS reference notebook's own code, restated (metallurk/local_gradients_smoothing, ``lgs.ipynb``
cell 4: ``get_gx``, ``get_gradient``, ``apply_gradient``), the one copy that
``tests/test_lgs_notebook.py`` checks patchbench against and ``benchmarks/bench_peers_defenses.py``
times patchbench against (the ICAART 2022 paper cites this notebook for LGS).

The lines are as written, with two changes only: ``device`` is the tensor's, and the padding is
applied per axis (the notebook builds its padding list as (rows, cols) and hands it to ``F.pad``,
which reads (cols, rows), and calls ``F.fold`` with ``output_size=(H, W)`` after naming the axes
``B, C, W, H``: identical for square images, transposed for non-square ones). The notebook's
min/max are batch-wide, so each image is run as its own batch.
"""

import torch
import torch.nn.functional as F


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
