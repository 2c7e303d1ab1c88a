"""What the input-level indicators share: the per-image attack loss, the attacker's pixel region,
and the defended forward pass model(T(x)).

Pintor et al. 2022 compute their indicators on the attack loss, the objective the attack
minimises. Our default, :func:`margin_loss`, is the logit margin z_y − max_{k≠y} z_k of the true
class (the untargeted form of the logit differences our patch attacks optimise, e.g. LaVAN's Eq. 3):
unlike cross-entropy it does not saturate, so a zero gradient points at the pipeline, not at a
confidently classified image. Any ``loss_fn(logits, labels) -> (N,)`` can replace it (e.g. a
targeted logit difference, or :func:`cross_entropy`).

Patch adaptation: Pintor et al. attack the whole image (an L∞ ball). A patch attacker moves only
the pixels under its patch, so the input-level indicators take an optional ``mask`` of the pixels
the attacker controls and look at the gradient (and put the random probes) there only; no mask is
the whole image, as in the paper.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from patchbench.defenses.base import Defense
from patchbench.errors import PatchbenchError, check

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image z_y − max_{k≠y} z_k (the attacker lowers it; < 0 means misclassified)."""
    true = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return true - others.amax(1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy (the attacker raises it; the gradient and stability indicators
    look at |∂L/∂x| and |ΔL|/|L|, so the sign does not matter there). Saturates: a confidently
    classified image has a vanishing gradient and a near-0 loss."""
    return F.cross_entropy(logits, labels, reduction="none")


def check_batch(images: torch.Tensor, labels: torch.Tensor) -> None:
    """An N×C×H×W float batch with N integer labels."""
    check(isinstance(images, torch.Tensor) and images.dim() == 4 and images.is_floating_point(),
          f"images must be an N×C×H×W float tensor, got {_describe(images)}")
    check(isinstance(labels, torch.Tensor) and labels.shape == (images.shape[0],) and not labels.is_floating_point(),
          f"labels must be {images.shape[0]} integer class indices, got {_describe(labels)}")


def _describe(t) -> str:
    return f"a {tuple(t.shape)} {t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__


def region(mask: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
    """The attacker's pixels as a bool tensor broadcast to ``images``' shape: ``mask`` may be
    H×W, 1×1×H×W, N×1×H×W or N×C×H×W (bool or 0/1); None is every pixel."""
    if mask is None:
        return torch.ones_like(images, dtype=torch.bool)
    check(isinstance(mask, torch.Tensor), f"mask must be a tensor, got {type(mask).__name__}")
    m = mask.to(images.device).bool()
    m = m.view(1, 1, *m.shape) if m.dim() == 2 else m
    try:
        m = m.expand_as(images)
    except RuntimeError:
        raise PatchbenchError(f"mask of shape {tuple(mask.shape)} does not fit images of shape "
                              f"{tuple(images.shape)}") from None
    check(bool(m.flatten(1).any(1).all()), "mask must select at least one pixel of every image")
    return m


def defended_logits(model: torch.nn.Module, defense: Defense, x: torch.Tensor, lam: float | None) -> torch.Tensor:
    """model(T(x)) with T the defense *as written*: ``apply(x, maps(x, model), lam)``, with
    whatever autograd graph (or none) the defense's own code builds — what a non-adaptive attacker
    that backpropagates through the deployed pipeline gets."""
    return model(defense.apply(x, defense.maps(x, model), lam))
