"""Indicators 3 and 4, read from what an attack records along its path: silent success and
incomplete optimization. Pure functions of the traces; no model.

A trace's last axis is the attack step (step 0 first); leading axes are anything (images,
patches, cells), so one call covers a batch of traces.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

from patchbench.errors import check, is_int, is_number

# ---- silent success ------------------------------------------------------------------------


def silent_success(success_trace: torch.Tensor, final_success: torch.Tensor, interval: float = 0.0) -> torch.Tensor:
    """Bool (...): some point along the attack path was adversarial, yet the returned result is not.

    Pintor et al. 2022 ("Silent Success"): the attack found an adversarial example during
    the optimisation but returned a non-adversarial one (it returns the last iterate, or picks the
    "best" by a loss that disagrees with success), so the evaluation over-counts robustness.
    Their code checks the path but its last point (which is what they return); we check every
    recorded step, which also catches an attack whose returned point is not its last iterate.

    * Bool traces (per image): ``success_trace`` (..., T) — the iterate at step t is adversarial
      (misclassified, or hits the target) — and ``final_success`` (...) for the returned result:
      fires where ``success_trace.any(-1) & ~final_success``.
    * Float traces, our adaptation to a universal patch, whose success is a *rate* over images:
      ``success_trace`` (..., T) the success rate of each recorded snapshot of the patch on a
      held-out batch, ``final_success`` (...) the rate of the returned patch; fires where some
      snapshot beat the returned patch by more than ``interval`` (e.g. the half-width of the
      rates' confidence interval; 0 by default).
    """
    check(isinstance(success_trace, torch.Tensor) and success_trace.dim() >= 1,
          "success_trace must be a tensor with the attack steps on its last axis")
    final = torch.as_tensor(final_success, device=success_trace.device)
    check(final.shape == success_trace.shape[:-1],
          f"final_success must have shape {tuple(success_trace.shape[:-1])} (the trace's without its "
          f"step axis), got {tuple(final.shape)}")
    check(success_trace.shape[-1] >= 1, "success_trace has no steps")
    if success_trace.dtype == torch.bool:
        check(final.dtype == torch.bool, "final_success must be bool like success_trace")
        return success_trace.any(-1) & ~final
    check(is_number(interval) and interval >= 0, f"interval must be a number >= 0, got {interval!r}")
    return success_trace.amax(-1) > final.to(success_trace.dtype) + interval


# ---- incomplete optimization -----------------------------------------------------------------

INCOMPLETE_TOLERANCE = 0.05  # Pintor's: the last steps of the rescaled loss span more than 0.05
INCOMPLETE_LAST = 0.10  # the window: the last 10 % of the steps (Pintor: the last 10 steps)


def running_min_rescaled(loss_trace: torch.Tensor) -> torch.Tensor:
    """Pintor's normalisation of a loss trace (..., T): first min-max rescaled to [0, 1] over the
    whole trace (a trace that never moves, max = min, maps to 0 — their all-zero case), then
    replaced by its running minimum (the best loss so far, so the attack's own oscillations and
    restarts do not count as progress)."""
    lo = loss_trace.amin(-1, keepdim=True)
    span = loss_trace.amax(-1, keepdim=True) - lo
    flat = span == 0
    rescaled = torch.where(flat, torch.zeros_like(loss_trace), (loss_trace - lo) / torch.where(flat, 1, span))
    return rescaled.cummin(-1).values


def window_length(steps: int, last: int | float = INCOMPLETE_LAST) -> int:
    """Steps in the final window: ``last`` as an int is a count (Pintor's 10), as a float in
    (0, 1] a fraction of ``steps`` (ceil); at least 2 (a span needs two points), at most ``steps``."""
    if is_int(last):
        check(last >= 2, f"last must be >= 2 steps, got {last}")
        k = last
    else:
        check(is_number(last) and 0 < last <= 1, f"last must be a step count >= 2 or a fraction in (0, 1], got {last!r}")
        k = math.ceil(round(last * steps, 9))  # round: 0.1 * 100 must not become 11 steps
    return min(steps, max(2, k))


def incomplete_optimization(loss_trace: torch.Tensor, last: int | float = INCOMPLETE_LAST,
                            tolerance: float = INCOMPLETE_TOLERANCE) -> torch.Tensor:
    """Bool (...): the attack stopped while its loss was still going down.

    Pintor et al. 2022 ("Incomplete Optimization"): too few steps or too small a step size
    leave the attack short of a (local) minimum. Their reference code rescales the attack loss
    (the one it *minimises*) to [0, 1], takes its running minimum (:func:`running_min_rescaled`)
    and fires when its last 10 values span more than 0.05 (:data:`INCOMPLETE_TOLERANCE`).

    ``loss_trace`` (T,) or (..., T): the loss per step, lower = better for the attacker (negate a
    maximised objective such as LaVAN's logit difference or a success rate). Our window is the
    last 10 % of the steps (:data:`INCOMPLETE_LAST`, at least 2) so the test scales with attacks
    of 100 to 10 000 steps; ``last=10`` gives Pintor's exact window (the two agree at 100 steps).
    A trace that is not finite everywhere fires (an attack whose loss became NaN/∞ did not converge).

    Blind spot (by construction; in the reference code such a trace divides 0 by 0 and its NaNs
    never compare above 0.05): a trace that never moves — step size 0, or a zero gradient —
    rescales to all zeros and reads as *complete*. Running-minimum rescaling
    measures the progress still being made relative to the progress made; with none made there is
    nothing to measure. Those failures are what :func:`~patchbench.audit.gradients.unavailable_gradients`
    and the unbounded-attack check (:func:`~patchbench.audit.comparisons.unconstrained_failure`) catch.
    """
    check(isinstance(loss_trace, torch.Tensor) and loss_trace.dim() >= 1 and loss_trace.shape[-1] >= 2,
          "loss_trace must be a tensor with at least 2 attack steps on its last axis")
    check(is_number(tolerance) and 0 <= tolerance < 1, f"tolerance must be in [0, 1), got {tolerance!r}")
    trace = loss_trace.double()
    finite = torch.isfinite(trace).all(-1)
    best = running_min_rescaled(torch.where(torch.isfinite(trace), trace, torch.zeros_like(trace)))
    tail = best[..., -window_length(trace.shape[-1], last):]
    spread = tail.amax(-1) - tail.amin(-1)  # = tail[0] - tail[-1]: the running minimum only falls
    return (spread > tolerance) | ~finite


# ---- the same two, on a stochastic attack's minibatch traces ------------------------------------

TRACE_BLOCKS = 20  # ours: a minibatch trace is read as 20 block means (one per 5 % of the steps)
NO_PROGRESS_Z = 3.0  # ours: an attack "made progress" when its best block beats its first by 3 standard errors


def block_means(trace: torch.Tensor, blocks: int = TRACE_BLOCKS) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., T) -> the means of ``blocks`` consecutive, near-equal blocks of steps (..., B) and each
    block's standard error (..., B) from its own spread (B = min(blocks, T // 2): two steps a block at least)."""
    check(isinstance(trace, torch.Tensor) and trace.dim() >= 1 and trace.shape[-1] >= 4,
          "a minibatch trace must be a tensor with at least 4 attack steps on its last axis")
    check(is_int(blocks) and blocks >= 2, f"blocks must be an integer >= 2, got {blocks!r}")
    t = trace.double()
    b = min(blocks, t.shape[-1] // 2)
    edges = torch.linspace(0, t.shape[-1], b + 1).round().long().tolist()
    parts = [t[..., lo:hi] for lo, hi in zip(edges, edges[1:])]
    means = torch.stack([p.mean(-1) for p in parts], -1)
    ses = torch.stack([p.std(-1) / math.sqrt(p.shape[-1]) for p in parts], -1)
    return means, ses


def minibatch_incomplete_optimization(loss_trace: torch.Tensor, blocks: int = TRACE_BLOCKS, last: float = INCOMPLETE_LAST,
                                      tolerance: float = INCOMPLETE_TOLERANCE, z: float = NO_PROGRESS_Z) -> torch.Tensor:
    """Bool (...): :func:`incomplete_optimization` for a patch attack's *minibatch* loss trace.

    A patch attack (LaVAN, Adversarial Patch) records the loss of a fresh training batch at every
    step, so its trace is the descent plus sampling noise; on the raw trace the running minimum
    keeps falling by chance (a new unlucky batch) and Pintor's test fires on every attack. Two
    adaptations (ours, stated as parameters):

    1. Pintor's test on the trace's ``blocks`` block means (:func:`block_means`; 20: one per 5 %
       of the steps), its window the blocks whose centres span the last ``last`` of the steps
       (10 %: the last three blocks, two block-widths apart);
    2. no progress fires too: the best block mean is not ``z`` standard errors below the first
       block's. This closes the blind spot of :func:`incomplete_optimization` (a trace that never
       moves reads as complete) for the case Pintor et al. name first among the causes, a step
       size too small to move the patch — with step size 0 the trace is pure sampling noise.
    """
    check(is_number(z) and z > 0, f"z must be a number > 0, got {z!r}")
    means, ses = block_means(loss_trace, blocks)
    finite = torch.isfinite(loss_trace.double()).all(-1)
    check(is_number(last) and 0 < last <= 1, f"last must be a fraction of the steps in (0, 1], got {last!r}")
    window = min(means.shape[-1], round(last * means.shape[-1]) + 1)
    still_falling = incomplete_optimization(means, last=max(2, window), tolerance=tolerance)
    best = means.amin(-1)
    noise = torch.sqrt(ses[..., 0] ** 2 + ses.gather(-1, means.argmin(-1, keepdim=True)).squeeze(-1) ** 2)
    no_progress = ~(means[..., 0] - best > z * noise)
    return still_falling | no_progress | ~finite


def minibatch_silent_success(hit_trace: torch.Tensor, final_success, batch: int, final_n: int | None = None,
                             blocks: int = TRACE_BLOCKS, alpha: float = 0.05) -> torch.Tensor:
    """Bool (...): :func:`silent_success` for a universal patch's minibatch success trace.

    ``hit_trace`` (..., T): the patch's success rate on each step's training batch of ``batch``
    images; ``final_success`` (...): the returned patch's rate, measured on ``final_n`` images (None:
    exact). Fires where some block mean of the trace (:func:`block_means`) beats the returned patch by
    more than z binomial standard errors of the difference (the block's steps × ``batch`` images, and
    the final rate's ``final_n``), z the one-sided Bonferroni quantile for ``alpha`` over the blocks
    (2.81 for 20 blocks at 5 %: the best of 20 noisy blocks beats a plateau by ~1.9 SE by chance) —
    an earlier iterate hit more images than the one returned. For a patch trained at random places
    (EoT) the trace's success is at random places and the final rate at the test place: the test
    then compares different things and reads as a lower bound."""

    check(is_int(batch) and batch >= 1, f"batch must be the images per step (>= 1), got {batch!r}")
    check(final_n is None or (is_int(final_n) and final_n >= 1), f"final_n must be a count >= 1, got {final_n!r}")
    check(is_number(alpha) and 0 < alpha < 1, f"alpha must be in (0, 1), got {alpha!r}")
    means, _ = block_means(hit_trace, blocks)
    per_block = hit_trace.shape[-1] / means.shape[-1] * batch
    final = torch.as_tensor(final_success, dtype=torch.float64, device=hit_trace.device).unsqueeze(-1)
    var = means.clamp(0, 1) * (1 - means.clamp(0, 1)) / per_block
    if final_n is not None:
        var = var + final.clamp(0, 1) * (1 - final.clamp(0, 1)) / final_n
    z = NormalDist().inv_cdf(1 - alpha / means.shape[-1])
    return ((means - final) > z * var.sqrt()).any(-1)
