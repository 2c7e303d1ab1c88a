"""How strong a patch attack is: AttackBench's optimality (Cinà et al., "AttackBench: Evaluating
Gradient-based Attacks for Adversarial Examples", AAAI 2025) with the patch's area as the budget.
Pure numpy on per-image outcomes; no I/O.

AttackBench's reference code (attackbench/AttackBench at cb475a2) computes it as follows:

* an attack's distance per sample is the smallest perturbation it found; a sample misclassified
  clean has distance 0 and a sample the attack never fooled +inf (``analysis/read.py`` l. 43-45);
* A*, per sample the best distance over every attack run on the model (``analysis/compile.py``
  l. 25-30, the minimum);
* the robust accuracy at budget ε is the share of samples whose distance exceeds ε
  (``analysis/utils.py``, ``eval_optimality``, l. 74-75 and 82-86);
* ρ, the clean accuracy, is the share of samples whose best distance is not 0 (l. 78); ``max_dist``
  the largest best distance (l. 79); each curve's area by the trapezoidal rule (l. 80 and 88), the
  attack's distances clipped at ``max_dist`` (l. 85);
* optimality = 1 − (A_attack − A*) / (ρ · max_dist − A*) (l. 89): 1 for an attack as good as the best
  of all on every sample, 0 for one that fools nothing the others fool; an attack's global optimality
  is its mean over the models, and attacks are ranked by it (README, stages 3-5).

Adapted to patches (:func:`first_fooling_area`, :func:`curve_area`, :func:`optimality`):

* the budget is the patch's area as a share of the image, a_k = s_k² / (H·W), over the grid of
  patch sides s_1 < … < s_K an attack is run at (a universal patch per side, each its own
  optimisation);
* an image's distance for one attack run: 0 when the (defended) model misclassifies it clean; else
  the smallest a_k whose patch makes the model misclassify it — an attacker allowed area a may use
  any patch of area ≤ a, as the reference keeps the smallest perturbation found; +inf when no size
  does;
* each curve is sampled at 0 and at every a_k of the grid (the reference samples at the distances
  that occur; on a grid that would interpolate across a size at which no image first falls, where
  the curve is flat, and drop the stretch from 0 to a_1 when every image is classified correctly);
* ``max_dist`` is the grid's largest area a_K (the reference's largest best distance: the same
  whenever the largest patch fools some image, and finite where some image resists every attack at
  every size, where the reference's would be +inf).

The trapezoid is the reference code's rule. attackbenchlib 2.0.2 (``attackbench.metrics.distances``,
``_aurec``) integrates the step function exactly instead — right for a minimum-norm attack's
continuous distances, but on a grid of K sizes the step integral up to a_K gives the largest size
no weight (an image first fooled at a_K would count as never fooled), so the trapezoid is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from patchbench.errors import check


def first_fooling_area(clean_correct, correct_by_size, areas) -> np.ndarray:
    """Per image (n): 0 where ``clean_correct`` is False, else the smallest of ``areas`` (K, strictly
    increasing, > 0) at which ``correct_by_size`` (K × n, the image classified correctly with that
    size's patch) is False, else +inf."""
    clean = np.asarray(clean_correct, dtype=bool)
    correct = np.asarray(correct_by_size, dtype=bool)
    a = np.asarray(areas, dtype=float)
    check(clean.ndim == 1 and correct.ndim == 2 and correct.shape == (len(a), len(clean)),
          f"correct_by_size must be (sizes, images) = ({len(a)}, {len(clean)}), got {correct.shape}")
    check(len(a) > 0 and bool((a > 0).all()) and bool((np.diff(a) > 0).all()),
          f"areas must be positive and strictly increasing, got {a.tolist()}")
    fooled = ~correct
    first = np.where(fooled.any(0), a[fooled.argmax(0)], np.inf)  # argmax: the first True, sizes ascending
    return np.where(clean, first, 0.0)


def robust_accuracy(distances, areas) -> np.ndarray:
    """The robust-accuracy curve at budgets ``[0, *areas]``: the share of images whose distance
    exceeds each budget."""
    d = np.asarray(distances, dtype=float)
    budgets = np.concatenate([[0.0], np.asarray(areas, dtype=float)])
    return (d[None, :] > budgets[:, None]).mean(1)


def curve_area(distances, areas) -> float:
    """Area under :func:`robust_accuracy` over ``[0, areas[-1]]``, trapezoidal rule."""
    rho = robust_accuracy(distances, areas)
    widths = np.diff(np.concatenate([[0.0], np.asarray(areas, dtype=float)]))
    return float((widths * (rho[:-1] + rho[1:]) / 2).sum())


@dataclass(frozen=True)
class Optimality:
    """One model's attacks: each one's area and optimality, and the reference quantities."""

    area: dict[str, float]  # A_attack, per attack
    optimality: dict[str, float]  # per attack; NaN where no attack fools any image (nothing to rank)
    best_area: float  # A*
    clean_accuracy: float  # ρ
    max_area: float  # max_dist: the grid's largest area
    best: np.ndarray  # A*'s distances, per image


def optimality(distances: dict[str, np.ndarray], areas) -> Optimality:
    """Every attack's optimality against the per-image best of all of them (see the module docstring).
    ``distances``: attack -> per-image distances (:func:`first_fooling_area`) on the same images."""
    check(len(distances) > 0, "optimality needs at least one attack")
    stacked = np.stack([np.asarray(d, dtype=float) for d in distances.values()])
    best = stacked.min(0)
    rho = float(np.count_nonzero(best) / len(best))
    top = float(np.asarray(areas, dtype=float)[-1])
    best_area = curve_area(best, areas)
    room = rho * top - best_area  # the area between the clean line and the best curve
    area = {name: curve_area(d, areas) for name, d in distances.items()}
    opt = {name: 1 - (a - best_area) / room if room > 1e-12 else math.nan for name, a in area.items()}
    return Optimality(area, opt, best_area, rho, top, best)


def ranks(scores: dict[str, float]) -> dict[str, int | None]:
    """1 for the highest score (the strongest attack); ties share the better rank; NaN: unranked."""
    valid = {k: v for k, v in scores.items() if not math.isnan(v)}
    return {k: (1 + sum(o > valid[k] for o in valid.values()) if k in valid else None) for k in scores}


def global_optimality(per_model: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per attack, the mean of its optimality over the models where it has one (AttackBench's
    global optimality, stage 4); NaN where it has none."""
    attacks = list(dict.fromkeys(a for scores in per_model.values() for a in scores))
    out = {}
    for a in attacks:
        values = [s[a] for s in per_model.values() if a in s and not math.isnan(s[a])]
        out[a] = float(np.mean(values)) if values else math.nan
    return out
