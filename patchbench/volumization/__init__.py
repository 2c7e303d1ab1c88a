"""Volumization (BMVC 2023 Sec. 4.1, Eq. 3-4) and the ranking metrics of Table 1.

V: (x, H, W, C) -> (x'_i, p_h, p_w, C, N) (Eq. 3) splits an image into N non-overlapping
p_h×p_w patches, ranks them by a metric m, and stacks them along a depth axis. Here images are
NCHW and a volume is ``(B, C, N, p_h, p_w)`` — the Conv3d layout, depth = the N patches in ranked
order.

The pieces, one module each: :mod:`.split` (split and merge, Eq. 4), :mod:`.metrics` (the
measures of Table 1 and their registry :data:`METRICS`), :mod:`.ranking` (scores and the stable
order, Sec. 4.3) and :mod:`.volumizer` (the module V).
"""

from patchbench.volumization.metrics import (  # noqa: F401
    METRICS, Metric, entropy, get_metric, histogram, joint_entropy, kl_divergence, max_norm, mse, mutual_information, psnr,
    quantize)
from patchbench.volumization.split import PADS, merge_patches, split_patches  # noqa: F401
from patchbench.volumization.ranking import ORDERS, REFERENCES, rank, reference_items, scores  # noqa: F401
from patchbench.volumization.volumizer import Volumizer  # noqa: F401
