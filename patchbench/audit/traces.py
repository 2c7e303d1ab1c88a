"""Indicators 3 and 4, read from what an attack records along its path: silent success and
incomplete optimization. Pure functions of the traces; no model.

A trace's last axis is the attack step (step 0 first); leading axes are anything (images,
patches, cells), so one call covers a batch of traces.
"""

from __future__ import annotations

import math

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
    and the unbounded-attack check (:func:`~patchbench.audit.cells.unconstrained_failure`) catch.
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
