"""AttackBench's optimality over patch area (patchbench.sections.optimality_metric) on synthetic
curves with known answers: hand-computed areas and optimalities, scipy's trapezoid on the curve as
an independent integral, and AttackBench's own ``eval_optimality`` numbers where its sampling (the
distances that occur) and ours (every grid size) coincide."""

import math

import numpy as np
import pytest
from scipy.integrate import trapezoid

from patchbench.audit.comparisons import half_image_side, unconstrained_failure_by_area
from patchbench.errors import PatchbenchError
from patchbench.sections.optimality_metric import (
    curve_area, first_fooling_area, global_optimality, optimality, ranks, robust_accuracy,
)

AREAS = [1.0, 2.0, 4.0]
INF = math.inf


def test_first_fooling_area_is_the_smallest_fooling_size_zero_when_wrong_clean_inf_when_never():
    clean = [True, True, True, False]
    correct = [[False, True, True, True],   # size 1: image 0 fooled
               [True, True, True, False],   # size 2: image 0 correct again (a universal patch of its own)
               [True, False, True, True]]   # size 4: image 1 fooled
    d = first_fooling_area(clean, correct, AREAS)
    assert d.tolist() == [1.0, 4.0, INF, 0.0]


def test_first_fooling_area_refuses_misshapen_input():
    with pytest.raises(PatchbenchError, match="strictly increasing"):
        first_fooling_area([True], [[True], [True]], [2.0, 1.0])
    with pytest.raises(PatchbenchError, match="sizes, images"):
        first_fooling_area([True, True], [[True], [True]], [1.0, 2.0])


def test_curve_and_area_by_hand():
    """X = [1, 4, inf, 0]: accuracy 3/4 at 0, 2/4 at 1 and 2, 1/4 at 4; trapezoid:
    (.75+.5)/2 + (.5+.5)/2 + 2(.5+.25)/2 = 1.875."""
    x = np.array([1, 4, INF, 0.0])
    assert robust_accuracy(x, AREAS).tolist() == [0.75, 0.5, 0.5, 0.25]
    assert curve_area(x, AREAS) == pytest.approx(1.875)
    assert curve_area(x, AREAS) == pytest.approx(trapezoid(robust_accuracy(x, AREAS), [0.0, *AREAS]))


def test_optimality_by_hand():
    """X = [1, 4, inf, 0], Y = [2, 2, 4, 0]; A* = [1, 2, 4, 0] (area 1.25), ρ = 3/4, max area 4:
    ρ·4 − A* = 1.75; X: 1 − (1.875 − 1.25)/1.75 = 9/14; Y: area 1.5, 1 − 0.25/1.75 = 6/7.
    (AttackBench's eval_optimality gives Y 1.0 here: it samples Y's curve only at 0, 2 and 4 and
    interpolates across size 1, where Y is flat; we sample every size of the grid.)"""
    out = optimality({"X": np.array([1, 4, INF, 0.0]), "Y": np.array([2, 2, 4, 0.0])}, AREAS)
    assert out.best.tolist() == [1.0, 2.0, 4.0, 0.0]
    assert out.clean_accuracy == 0.75 and out.max_area == 4.0
    assert out.best_area == pytest.approx(1.25)
    assert out.area == pytest.approx({"X": 1.875, "Y": 1.5})
    assert out.optimality == pytest.approx({"X": 9 / 14, "Y": 6 / 7})
    assert ranks(out.optimality) == {"Y": 1, "X": 2}


def test_optimality_equals_attackbench_where_the_samplings_coincide():
    """Every grid size and 0 occur among the distances, none is infinite: AttackBench's
    analysis/utils.py eval_optimality (commit cb475a2, run on these arrays) gives P 0.8214285714285713
    (= 23/28) and Q 0.75."""
    best = np.array([0, 1, 2, 4, 1, 1.0])
    p, q = np.array([0, 1, 2, 4, 4, 1.0]), np.array([0, 2, 2, 4, 1, 4.0])
    out = optimality({"P": p, "Q": q, "best": best}, AREAS)
    assert out.optimality["P"] == pytest.approx(0.8214285714285713)
    assert out.optimality["Q"] == pytest.approx(0.75)
    assert out.optimality["best"] == pytest.approx(1.0)


def test_an_attack_that_fools_nothing_scores_zero_and_the_best_one():
    none = np.array([INF, INF, 0.0])
    good = np.array([1.0, 2.0, 0.0])
    out = optimality({"none": none, "good": good}, AREAS)
    assert out.optimality == pytest.approx({"none": 0.0, "good": 1.0})


def test_nothing_fooled_anywhere_has_no_optimality():
    out = optimality({"a": np.array([INF, 0.0]), "b": np.array([INF, 0.0])}, AREAS)
    assert all(math.isnan(v) for v in out.optimality.values())
    assert ranks(out.optimality) == {"a": None, "b": None}


def test_optimality_is_between_zero_and_one_on_random_grids():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k, m = 40, 4, 3
        areas = np.cumsum(rng.uniform(0.1, 1.0, k))
        clean = rng.random(n) > 0.1
        runs = {f"a{i}": first_fooling_area(clean, rng.random((k, n)) > 0.4, areas) for i in range(m)}
        out = optimality(runs, areas)
        for v in out.optimality.values():
            assert 0 - 1e-12 <= v <= 1 + 1e-12
        # the per-image best of all is an attack of its own: optimality 1
        assert optimality({**runs, "best": out.best}, areas).optimality["best"] == pytest.approx(1.0)


def test_global_optimality_is_the_mean_over_models_and_ties_share_a_rank():
    g = global_optimality({"m1": {"a": 0.5, "b": 1.0}, "m2": {"a": 0.7, "b": float("nan")}, "m3": {"a": 0.9}})
    assert g == pytest.approx({"a": 0.7, "b": 1.0})
    assert ranks({"a": 0.5, "b": 0.5, "c": 0.9}) == {"c": 1, "a": 2, "b": 2}


def test_unconstrained_failure_from_the_area_curve():
    """45 px covers at most half of a 64 px image; an image counts as reached when a patch of at most
    half the image fooled it (0 = wrong clean, not attacked)."""
    assert half_image_side(64) == 45 and half_image_side(224) == 158 and 158 ** 2 <= 224 ** 2 / 2 < 159 ** 2
    half = 45 ** 2 / 64 ** 2
    clean = np.array([True] * 20 + [False])
    reached = np.array([0.01] * 19 + [INF] + [0.0])  # 1 of 20 correct images never fooled: 5 %, not above
    assert not bool(unconstrained_failure_by_area(reached, clean, half))
    reached[0] = 0.6  # fooled only by a patch larger than half the image: 2 of 20 missed
    assert bool(unconstrained_failure_by_area(reached, clean, half))
