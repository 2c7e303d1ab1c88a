"""Indicator 1, unavailable gradients: can a gradient attack move the input at all?

Pintor et al. 2022 ("Unavailable Gradients"): the attack cannot be run by gradient
descent when the model is not end-to-end differentiable or its gradient is zero. Their reference
code fires when computing the gradient of the classifier *raises* (an interrupted computational
graph) or when the gradient of the attack objective w.r.t. the input of some sample has no
non-zero component (its L0 norm is 0: an exact zero).

Our adaptation, per image: the gradient of the per-image attack loss (:mod:`.pipeline`) w.r.t.
the input, through the defended model model(T(x)), fires when it

* cannot be computed: the forward or backward pass raises, or T's output has no graph back to x
  (missing — a defense that leaves autograd, e.g. through a codec or ``detach``);
* is non-finite anywhere in the attacker's region (NaN/∞: a step would destroy the iterate);
* is (near) zero over the attacker's region: max |∂L/∂x| ≤ :data:`ZERO_GRAD_ATOL`.

The region is the patch (``mask``), for a patch attacker moves only those pixels; no mask is the
whole image (the paper's L∞ threat model). LGS shows why: its factor clip(1 − λ·g(x), 0, 1) is 0
wherever λ·g ≥ 1, and where that covers the patch and the ring of pixels whose Sobel response
touches it, ∂L/∂patch is exactly 0 while the background (g = 0, factor 1) keeps its gradient.
Below saturation LGS as written is *not* gradient-free: its ``maps`` keep the Sobel and min-max
in the graph (only the window keep-test is a constant), so at λ = 1-2.3 the gradient reaches
nearly every patch pixel (the tests' 6×6 noise patch, 3 seeds: ≥ 63 of 108 values at λ = 1,
≥ 93 at λ = 2.3, 16-47 at λ = 10, 0-12 at λ = 100, none at λ = 10⁴). A defense whose output leaves the graph (a codec,
``detach``, numpy) fires at any setting.

Which T (``path``):

* :data:`AS_WRITTEN` (default): ``defense.apply(x, defense.maps(x, model), lam)`` with autograd
  on, i.e. the deployed pipeline differentiated as its code stands — what a non-adaptive attacker
  that backpropagates "through the defense" gets. This is the indicator.
* :data:`DECLARED`: :meth:`~patchbench.defenses.base.Defense.differentiable`, the gradient the
  defense declares for adaptive attacks (exact, BPDA or partial). Checking that *this* does not
  fire is how an audit confirms the remedy (an adaptive / BPDA attack) has a signal to follow.
"""

from __future__ import annotations

import torch

from patchbench.audit.pipeline import LossFn, check_batch, defended_logits, margin_loss, region
from patchbench.defenses.base import Defense
from patchbench.errors import PatchbenchError, check
from patchbench.util import eval_mode

# Pintor et al.'s reference code tests for an exact zero (the gradient's L0 norm is 0). We allow
# a float residue: a masked pipeline leaves products like x·0 and sums of ±tiny terms, far below
# any gradient a float32 attack step could use; a real signal on [0, 1] images is many orders above.
ZERO_GRAD_ATOL = 1e-12

AS_WRITTEN = "as-written"
DECLARED = "declared"
PATHS = (AS_WRITTEN, DECLARED)


def input_gradient(model: torch.nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
                   lam: float | None = None, loss_fn: LossFn | None = None, path: str = AS_WRITTEN,
                   options: dict[str, str] | None = None) -> torch.Tensor | None:
    """∂L/∂x of the per-image loss through model(T(x)), N×C×H×W, or None where there is none
    (the pipeline raised or has no graph to x). The model runs in eval mode (batch-invariant).

    A :class:`~patchbench.errors.PatchbenchError` (a bad defense parameter, say) propagates; so does
    an error the *plain* forward pass raises too (the pipeline is broken, not its gradient)."""
    check_batch(images, labels)
    check(path in PATHS, f"path must be one of {', '.join(PATHS)}, got {path!r}")
    loss_fn = loss_fn or margin_loss
    x = images.detach().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        try:
            if path == AS_WRITTEN:
                logits = defended_logits(model, defense, x, lam)
            else:
                logits = model(defense.differentiable(x, lam, model, options))
            loss = loss_fn(logits, labels)
            check(loss.shape == (images.shape[0],),
                  f"loss_fn must return one loss per image ({images.shape[0]}), got shape {tuple(loss.shape)}")
            if not loss.requires_grad:  # T's output is cut off from x: an interrupted graph
                return None
            (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
            return grad
        except PatchbenchError:
            raise
        except Exception:
            _forward_works(model, defense, images, lam)  # re-raises when the forward fails too
            return None


def _forward_works(model, defense: Defense, images: torch.Tensor, lam: float | None) -> None:
    with eval_mode(model), torch.no_grad():
        defended_logits(model, defense, images.detach(), lam)


def unavailable_gradients(model: torch.nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor, *,
                          lam: float | None = None, mask: torch.Tensor | None = None,
                          loss_fn: LossFn | None = None, path: str = AS_WRITTEN,
                          options: dict[str, str] | None = None, atol: float = ZERO_GRAD_ATOL) -> torch.Tensor:
    """Per-image bool (N,): the input gradient through the defended model is missing, raises,
    is non-finite, or has max |∂L/∂x| ≤ ``atol`` over the attacker's region ``mask`` (see the
    module docstring). ``lam``: the defense's smoothing factor; ``options``: gradient choices for
    ``path="declared"``."""
    grad = input_gradient(model, defense, images, labels, lam=lam, loss_fn=loss_fn, path=path, options=options)
    n = images.shape[0]
    if grad is None:
        return torch.ones(n, dtype=torch.bool, device=images.device)
    where = region(mask, images)
    nonfinite = (~torch.isfinite(grad) & where).flatten(1).any(1)
    size = torch.where(where, grad.abs(), torch.zeros_like(grad)).flatten(1).amax(1)
    return nonfinite | ~(size > atol)  # ~(>) so a NaN size counts as zero too
