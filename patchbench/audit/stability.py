"""Indicator 2, unstable predictions: does the attack loss jump under tiny input changes?

Pintor et al. 2022 ("Unstable Predictions"): randomised defenses and rugged loss
landscapes make the loss at a point a poor guide to the loss nearby, so gradient steps are noise.
Their reference code measures it, per sample, as the mean over γ = 100 random perturbations δ_k
of the relative variation of the attack loss L,

    v(x) = min(1, (1/γ) Σ_k |L(x + δ_k) − L(x)| / |L(x)|),

with δ_k uniform in [−r/2, r/2] per input component (their ``(rand − 0.5)·radius``), r = 8/255,
|L(x)| replaced by 1 where it is 0, and L(x) evaluated once (so the randomness of a randomised
model enters both L(x) and every L(x + δ_k)). They report v as a continuous score.

Ours: the same v per image, through model(T(x)) with T the defense as deployed (``defense(x,
lam, model)``, no gradient needed), with

* ``sigma`` = Pintor's r (the *full* width of the uniform noise; default :data:`UNSTABLE_SIGMA`),
  ``n`` = γ (default :data:`UNSTABLE_N`);
* the probes confined to the attacker's region ``mask`` (the patch; default the whole image, as
  in the paper) and the probed images clipped to [0, 1] (the defenses' domain; Pintor's are not);
* a cut-off: the indicator fires when v > :data:`UNSTABLE_THRESHOLD`. The reference code has
  none (it stores v); 0.1 is ours. On the test's small conv net with margins ≈ 0.4-1.4 a
  deterministic pipeline gives v ≤ 0.02 and the same pipeline with Gaussian noise (σ = 1,
  clipped) in the defense v ≥ 0.16.

Caveat (Pintor's definition): v divides by |L(x)|, so it is ill-conditioned where the loss is
near 0 — with the margin loss, an image on the decision boundary, where even a deterministic
model fires (|margin| 0.016 gives v ≈ 0.34 in the test). Audit correctly classified images with
a clear margin, or pass a ``loss_fn`` that stays away from 0.
"""

from __future__ import annotations

import torch

from patchbench.audit.pipeline import LossFn, check_batch, margin_loss, region
from patchbench.defenses.base import Defense
from patchbench.errors import check, is_int, is_number
from patchbench.util import eval_mode

UNSTABLE_SIGMA = 8 / 255  # Pintor's radius r: noise uniform in [-4/255, 4/255] per pixel
UNSTABLE_N = 100  # Pintor's γ: random perturbations per image
UNSTABLE_THRESHOLD = 0.1  # ours: the reference code reports the capped mean v without a cut-off
UNSTABLE_CAP = 1.0  # Pintor's min(v, 1)


def unstable_prediction_scores(model: torch.nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor,
                               sigma: float = UNSTABLE_SIGMA, n: int = UNSTABLE_N, *, lam: float | None = None,
                               mask: torch.Tensor | None = None, loss_fn: LossFn | None = None,
                               generator: torch.Generator | None = None, chunk: int = 10) -> torch.Tensor:
    """Pintor's v per image, (N,) in [0, 1] (module docstring). ``chunk``: perturbations evaluated
    per forward pass (n·N images in all); ``generator`` seeds the probes (not the defense's own
    randomness)."""
    check_batch(images, labels)
    check(is_number(sigma) and sigma > 0, f"sigma must be a number > 0, got {sigma!r}")
    check(is_int(n) and n >= 1, f"n must be an integer >= 1, got {n!r}")
    check(is_int(chunk) and chunk >= 1, f"chunk must be an integer >= 1, got {chunk!r}")
    loss_fn = loss_fn or margin_loss
    x = images.detach()
    where = region(mask, x).to(x.dtype)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with eval_mode(model), torch.no_grad():
        reference = loss_fn(model(defense(x, lam, model)), labels)
        scale = torch.where(reference == 0, torch.ones_like(reference), reference.abs())
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            noise = torch.rand((k, *x.shape), generator=generator, device=x.device, dtype=x.dtype) - 0.5
            probes = (x.unsqueeze(0) + noise * sigma * where).clamp(0, 1).flatten(0, 1)  # k·N images
            losses = loss_fn(model(defense(probes, lam, model)), labels.repeat(k)).view(k, -1)
            total += ((losses - reference).abs() / scale).sum(0)
    return (total / n).clamp(max=UNSTABLE_CAP)


def unstable_predictions(model: torch.nn.Module, defense: Defense, images: torch.Tensor, labels: torch.Tensor,
                         sigma: float = UNSTABLE_SIGMA, n: int = UNSTABLE_N, *, lam: float | None = None,
                         mask: torch.Tensor | None = None, loss_fn: LossFn | None = None,
                         threshold: float = UNSTABLE_THRESHOLD, generator: torch.Generator | None = None,
                         chunk: int = 10) -> torch.Tensor:
    """Per-image bool (N,): Pintor's relative loss variation v exceeds ``threshold``."""
    check(is_number(threshold) and 0 <= threshold < UNSTABLE_CAP, f"threshold must be in [0, 1), got {threshold!r}")
    v = unstable_prediction_scores(model, defense, images, labels, sigma, n, lam=lam, mask=mask,
                                   loss_fn=loss_fn, generator=generator, chunk=chunk)
    return v > threshold
