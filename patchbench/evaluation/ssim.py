"""Image-quality metrics of defended images (ICAART 2022 Sec. 4.2: SSIM between input and output)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity


def ssim_per_image(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """scikit-image's ``structural_similarity`` of each image pair (N×C×H×W in [0, 1]).

    Library defaults (7×7 uniform window, K1 = 0.01, K2 = 0.03) with ``data_range=1``; colour
    images are compared per channel and averaged (``channel_axis``), as the paper's
    "structural similarity from scikit-image" implies.
    """
    a64 = a.detach().to("cpu", torch.float64).numpy()
    b64 = b.detach().to("cpu", torch.float64).numpy()
    out = np.empty(len(a64))
    for i in range(len(a64)):  # the reference implementation works on one image at a time
        if a64.shape[1] == 1:
            out[i] = structural_similarity(a64[i, 0], b64[i, 0], data_range=1.0)
        else:
            out[i] = structural_similarity(a64[i], b64[i], data_range=1.0, channel_axis=0)
    return out
