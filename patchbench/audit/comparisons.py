"""Indicators read from a cell's accuracies (a grid cell: model × defense × λ × attack × budget):
transfer failure and unconstrained failure (Pintor et al. 2022), two checks of Carlini et al.
2019's checklist ("On Evaluating Adversarial Robustness"): accuracy that does not fall
with the budget, and random search beating the gradient attack, and the AutoAttack cross-check
(Croce & Hein 2020): AutoAttack beating the cell's attack on the same images.

Accuracies are fractions in [0, 1]; an ``interval`` is a half-width in the same units (e.g. of a
95 % confidence interval of the difference) and broadcasts against the accuracies, so a column of
cells is one call. Every function returns a bool tensor of the broadcast shape.
"""

from __future__ import annotations

import math

import torch

from patchbench.errors import check

UNCONSTRAINED_THRESHOLD = 0.05  # the issue's: the unbounded attack may miss at most 5 % of the correct images
HALF_IMAGE = 0.5  # the unbounded budget of a patch attack: a patch covering half the image


def _tensor(name: str, value, dtype=torch.float64) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=dtype)
    if dtype.is_floating_point:
        check(bool(torch.isfinite(t).all()), f"{name} must be finite, got {value!r}")
    return t


def _accuracy(name: str, value) -> torch.Tensor:
    t = _tensor(name, value)
    check(bool(((t >= 0) & (t <= 1)).all()), f"{name} must be accuracies in [0, 1], got {value!r}")
    return t


def _interval(value) -> torch.Tensor:
    t = _tensor("interval", value)
    check(bool((t >= 0).all()), f"interval must be >= 0 (a half-width), got {value!r}")
    return t


def transfer_failure(whitebox_acc, transfer_acc, interval=0.0) -> torch.Tensor:
    """The cell's own white-box attack is beaten by a transferred one.

    Pintor et al. 2022 ("Transfer Failure") flag, per sample, an attack optimised on a surrogate
    whose adversarial example the target model classifies differently (it did not transfer).
    Turned around for a cell, the same disagreement indicts the white-box attack: a patch trained
    on the undefended model (or through the defense by BPDA) and evaluated through the defense
    should never lower accuracy more than an attack that sees the defended model. Fires where
    ``whitebox_acc − transfer_acc > interval``. Remedy: an adaptive attack (Athalye et al. 2018's
    BPDA where the defense is not differentiable).
    """
    return _accuracy("whitebox_acc", whitebox_acc) - _accuracy("transfer_acc", transfer_acc) > _interval(interval)


def unconstrained_failure(success_unbounded, correct_clean, threshold: float = UNCONSTRAINED_THRESHOLD) -> torch.Tensor:
    """With the budget lifted the attack still fails on too many images.

    Pintor et al. 2022 ("Unconstrained Attack Failure"): an attack run without a bound must reach
    the adversarial region on every point it attacks; where it does not, the optimisation (not the
    defense) is what failed. Their code counts, per point, a correctly classified point on which
    the unbounded attack fails (and found no silent success), averaged over all points, and stores
    the rate. For patches the unbounded attack is a patch of half the image (or ε = 1).

    ``success_unbounded``, ``correct_clean``: bool (..., N) per image — the unbounded attack
    succeeded (count a silent success as success), the clean image is classified correctly. Fires
    where the attack fails on more than ``threshold`` of the correctly classified images (ours: the
    rate among those it attacked, not among all points; :data:`UNCONSTRAINED_THRESHOLD` = 0.05).
    A cell with no correctly classified image has nothing to fail on and does not fire.
    """
    success = torch.as_tensor(success_unbounded)
    correct = torch.as_tensor(correct_clean)
    check(success.dtype == torch.bool and correct.dtype == torch.bool,
          "success_unbounded and correct_clean must be bool tensors (one value per image)")
    check(success.shape == correct.shape and success.dim() >= 1,
          f"success_unbounded {tuple(success.shape)} and correct_clean {tuple(correct.shape)} must have the "
          "same shape, images on the last axis")
    check(0 <= threshold < 1, f"threshold must be in [0, 1), got {threshold!r}")
    failed = (correct & ~success).sum(-1).double()
    attacked = correct.sum(-1).double()
    return failed > threshold * attacked  # = failed / attacked > threshold, and False with none attacked


def half_image_side(image_size: int) -> int:
    """The side of the largest square patch covering at most :data:`HALF_IMAGE` of a square image
    of ``image_size`` px (45 px at 64 px: 49.4 % of the image)."""
    return math.isqrt(int(image_size * image_size * HALF_IMAGE))


def unconstrained_failure_by_area(first_area, correct_clean, half_area: float = HALF_IMAGE,
                                  threshold: float = UNCONSTRAINED_THRESHOLD) -> torch.Tensor:
    """:func:`unconstrained_failure` read from an attack's robust-accuracy-vs-area curve: per image the
    smallest patch area (share of the image) at which the attack fools it, 0 for an image misclassified
    clean, +inf for one no size fools (``patchbench.sections.optimality_metric.first_fooling_area``,
    the patch-optimality section's machinery, its sizes up to the :func:`half_image_side` patch). The
    unbounded attack reaches an image when some patch of area <= ``half_area`` fools it (a smaller
    patch's success counts, as a silent success does)."""
    area = torch.as_tensor(first_area, dtype=torch.float64)
    check(not bool(area.isnan().any()) and bool((area >= 0).all()), f"first_area must be areas >= 0 or inf, got {first_area!r}")
    return unconstrained_failure(area <= half_area, torch.as_tensor(correct_clean), threshold)


def non_monotonic(acc_by_budget, ci_by_budget=0.0) -> torch.Tensor:
    """Accuracy rises with the budget (patch size or ε) beyond the intervals.

    Carlini et al. 2019's checklist asks that attack success grow with the distortion bound: a
    stronger attacker can always replay a weaker one's perturbation (a bigger patch can contain a
    smaller one), so accuracy must not grow with the budget; where it does, the attack failed at
    the larger budget. ``acc_by_budget`` (..., B) ordered by
    increasing budget, ``ci_by_budget`` (..., B) or a scalar: each accuracy's half-width. Fires
    where some larger budget's accuracy exceeds some smaller budget's by more than the two
    half-widths together (the intervals do not overlap). Over every pair, not only neighbours: a
    slow drift up across a sweep counts too.
    """
    acc = _accuracy("acc_by_budget", acc_by_budget)
    check(acc.dim() >= 1, "acc_by_budget must have the budgets on its last axis")
    acc, ci = torch.broadcast_tensors(acc, _interval(ci_by_budget))
    rise = acc.unsqueeze(-2) - acc.unsqueeze(-1)  # [..., i, j] = acc_j - acc_i
    room = ci.unsqueeze(-2) + ci.unsqueeze(-1)
    later = torch.ones(acc.shape[-1], acc.shape[-1], dtype=torch.bool).triu(1)  # j > i
    return ((rise > room) & later).flatten(-2).any(-1)


def random_beats_gradient(acc_random, acc_gradient, interval=0.0) -> torch.Tensor:
    """A gradient-free random search, at the same query budget, beats the gradient attack.

    Carlini et al. 2019's checklist asks for a gradient-free attack and for brute-force random
    search next to the gradient attack: with useful gradients, following them beats sampling; where random search leaves lower accuracy, the gradients are masked or
    misleading. Fires where ``acc_gradient − acc_random > interval``. Remedy: BPDA / EOT, or
    report the random-search number as the robustness.
    """
    return _accuracy("acc_gradient", acc_gradient) - _accuracy("acc_random", acc_random) > _interval(interval)


def autoattack_gap(reported_acc, autoattack_acc, interval=0.0) -> torch.Tensor:
    """AutoAttack, on the same model and images, leaves a lower robust accuracy than the cell reports.

    Croce & Hein 2020 ("Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020) found many published ε-bounded robustness numbers
    overestimated by the attack that produced them; their ensemble (APGD-CE, APGD-T, FAB-T,
    Square) is the standard second opinion. Fires where ``reported_acc − autoattack_acc >
    interval``; :func:`patchbench.runner.autoattack.autoattack_check` passes the lower half-width
    of the reported cell's 95 % Wilson interval on the compared images, i.e. it fires where
    AutoAttack's accuracy falls below that interval. Remedy: report AutoAttack's number, and rerun
    the cell's attack with more steps / restarts (or adaptively through a defense).
    """
    return _accuracy("reported_acc", reported_acc) - _accuracy("autoattack_acc", autoattack_acc) > _interval(interval)
