"""Gradient saliency of a classifier (Simonyan et al. 2013), as ICAART 2022 uses it (Eq. 6).

ICAART Sec. 3: instead of one class score, S is "the cross entropy of the top 5 classes": here
S(x) = Σ_{c ∈ top-k(x)} CE(f(x), c) with the classes ranked by the model's own logits, and
M(x) = |∂S/∂x| reduced over channels by max (Simonyan et al.'s rule), an N×1×H×W map.

Batch-invariant: S sums per-image terms and the model runs in eval mode, so ∂S/∂x_i only depends
on image i. ``create_graph=True`` keeps the graph (second-order gradients for adaptive attacks).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from patchbench.util import eval_mode


def topk_cross_entropy(logits: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Per-image Σ over the k highest-scoring classes of -log softmax (ICAART Sec. 3)."""
    k = min(k, logits.shape[1])
    top = logits.detach().topk(k, dim=1).indices
    return -F.log_softmax(logits, dim=1).gather(1, top).sum(1)


def saliency_map(model: torch.nn.Module, x: torch.Tensor, top_k: int = 5,
                 create_graph: bool = False) -> torch.Tensor:
    """M(x) = max_c |∂S/∂x_c| (Eq. 6), shape N×1×H×W, on x's device.

    Without ``create_graph`` the result is detached and x's own graph is left untouched.
    """
    # a second-order gradient needs attention's math kernel: the fused CPU / flash / memory-efficient
    # kernels of scaled_dot_product_attention (ViT) have no double backward
    second_order = sdpa_kernel(SDPBackend.MATH) if create_graph else contextlib.nullcontext()
    with eval_mode(model), torch.enable_grad(), second_order:
        xi = x if create_graph else x.detach().requires_grad_(True)
        if not xi.requires_grad:
            xi = xi.requires_grad_(True)
        s = topk_cross_entropy(model(xi), top_k).sum()
        (grad,) = torch.autograd.grad(s, xi, create_graph=create_graph)
    m = grad.abs().amax(1, keepdim=True)
    return m if create_graph else m.detach()
