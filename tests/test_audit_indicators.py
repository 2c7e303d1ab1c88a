"""The attack-failure indicators (patchbench.audit): for each, a case that fires and one that does
not, on synthetic tensors and a conv net of a few hundred parameters on 16×16 images."""

import dataclasses
import math
from typing import ClassVar

import pytest
import torch
import torch.nn as nn

import patchbench.audit as audit
from patchbench.audit import (
    AS_WRITTEN,
    AUDIT_COLUMNS,
    DECLARED,
    INDICATORS,
    incomplete_optimization,
    non_monotonic,
    random_beats_gradient,
    running_min_rescaled,
    silent_success,
    transfer_failure,
    unavailable_gradients,
    unconstrained_failure,
    unstable_prediction_scores,
    unstable_predictions,
)
from patchbench.audit.indicators import (
    ADAPTIVE,
    ADAPTIVE_CELL,
    BPDA,
    CELL_KINDS,
    EOT,
    REMEDIES,
    TRANSFER,
    UNDEFENDED,
    cell_kind,
)
from patchbench.audit.stability import UNSTABLE_THRESHOLD
from patchbench.defenses import JPEG, LGS, GaussianFilter, NoDefense
from patchbench.defenses.base import Defense
from patchbench.errors import PatchbenchError

SIZE, PATCH, AT = 16, 6, 5  # 16×16 images, a 6×6 patch at rows/cols 5..10


def tiny_model(seed: int = 0, bias: float = 0.0, gain: float = 1.0) -> nn.Module:
    """Conv 3→4 (stride 4) + linear 64→3: 307 parameters. ``bias`` is added to class 0's logit
    (so images labelled 0 have a margin well away from 0); ``gain`` scales the conv (how much the
    logits move with the input)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[0].weight *= gain
        model[0].bias *= gain
        model[3].bias[0] += bias
    return model.eval()


def random_images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def patched_images(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat random-colour backgrounds with a random-noise patch pasted at (AT, AT), and its mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, SIZE, SIZE).clone()
    x[:, :, AT:AT + PATCH, AT:AT + PATCH] = torch.rand(n, 3, PATCH, PATCH, generator=g)
    mask = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.bool)
    mask[..., AT:AT + PATCH, AT:AT + PATCH] = True
    return x, mask


LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
SMALL_LGS = dict(window=4, overlap=1, threshold=0.1)  # windows that fit a 16×16 image


# ---- test-only defenses --------------------------------------------------------------------


@dataclasses.dataclass
class NumpyDefense(Defense):
    """Goes through numpy: fine under no_grad, raises with autograd on (x requires grad)."""

    name: ClassVar[str] = "numpy-test"
    uses_lambda: ClassVar[bool] = False

    def maps(self, x, model=None):
        return {"out": torch.from_numpy(x.numpy() * 1.0)}


@dataclasses.dataclass
class BrokenDefense(Defense):
    name: ClassVar[str] = "broken-test"
    uses_lambda: ClassVar[bool] = False

    def maps(self, x, model=None):
        raise RuntimeError("this defense is broken")


@dataclasses.dataclass
class NaNGradDefense(Defense):
    """Identity forward whose backward is NaN: d/dx sqrt(0·x) = 0 · 1/(2·0)."""

    name: ClassVar[str] = "nan-grad-test"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"

    def maps(self, x, model=None):
        return {"out": x + torch.sqrt(x * 0)}


@dataclasses.dataclass
class NoisyDefense(Defense):
    """A randomised defense: adds fresh Gaussian noise on every call."""

    name: ClassVar[str] = "noisy-test"
    uses_lambda: ClassVar[bool] = False
    std: float = 0.3

    def maps(self, x, model=None):
        return {"out": (x + self.std * torch.randn_like(x)).clamp(0, 1)}


# ---- 1. unavailable gradients ----------------------------------------------------------------


def test_undefended_model_has_gradients_everywhere_and_on_the_patch():
    x, mask = patched_images()
    model = tiny_model()
    assert not unavailable_gradients(model, NoDefense(), x, LABELS).any()
    assert not unavailable_gradients(model, NoDefense(), x, LABELS, mask=mask).any()


def test_saturated_lgs_gives_the_patch_no_gradient():
    """LGS as written zeroes the high-gradient area — the patch — with a clipped factor: where
    λ·g ≥ 1 on the whole patch and the ring around it, ∂L/∂patch is exactly 0 (the background,
    g = 0, keeps its gradient, so over the whole image the indicator stays quiet)."""
    x, mask = patched_images()
    model, lgs = tiny_model(), LGS(**SMALL_LGS)
    assert unavailable_gradients(model, lgs, x, LABELS, lam=1e4, mask=mask).all()
    assert not unavailable_gradients(model, lgs, x, LABELS, lam=1e4).any()
    assert not unavailable_gradients(model, NoDefense(), x, LABELS, mask=mask).any()


def test_unsaturated_lgs_leaks_a_gradient_to_the_patch():
    """At a λ that leaves part of the patch unclipped, LGS's Sobel and min-max stay in the graph
    (its maps are not detached): the gradient is partial but available, so no indicator. Measured
    over 3 seeds: ≥ 93 of the patch's 108 values get a gradient at λ = 2.3, 16-47 at λ = 10,
    0-12 at λ = 100, none at λ = 10⁴."""
    x, mask = patched_images()
    assert not unavailable_gradients(tiny_model(), LGS(**SMALL_LGS), x, LABELS, lam=2.3, mask=mask).any()


def test_a_codec_has_no_graph_as_written_but_its_declared_bpda_gradient_works():
    x = random_images()
    model, jpeg = tiny_model(), JPEG()
    assert unavailable_gradients(model, jpeg, x, LABELS, path=AS_WRITTEN).all()
    assert not unavailable_gradients(model, jpeg, x, LABELS, path=DECLARED).any()


def test_a_pipeline_that_raises_only_under_autograd_fires():
    x = random_images()
    assert unavailable_gradients(tiny_model(), NumpyDefense(), x, LABELS).all()
    assert not unavailable_gradients(tiny_model(), NumpyDefense(), x, LABELS, path=DECLARED).any()  # BPDA


def test_a_pipeline_broken_without_autograd_too_is_an_error_not_an_indicator():
    with pytest.raises(RuntimeError, match="broken"):
        unavailable_gradients(tiny_model(), BrokenDefense(), random_images(), LABELS)


def test_a_non_finite_gradient_fires():
    assert unavailable_gradients(tiny_model(), NaNGradDefense(), random_images(), LABELS).all()


def test_bad_inputs_are_one_line_errors():
    x, _ = patched_images()
    with pytest.raises(PatchbenchError, match="labels must be 6 integer class indices"):
        unavailable_gradients(tiny_model(), NoDefense(), x, LABELS.float())
    with pytest.raises(PatchbenchError, match="does not fit"):
        unavailable_gradients(tiny_model(), NoDefense(), x, LABELS, mask=torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(PatchbenchError, match="path must be"):
        unavailable_gradients(tiny_model(), NoDefense(), x, LABELS, path="adaptive")


# ---- 2. unstable predictions ---------------------------------------------------------------


def test_a_deterministic_pipeline_is_stable():
    """Labels 0 with class 0's logit raised by 1: margins ≈ 0.4-1.4, so Pintor's division by |L(x)|
    is well conditioned. Measured over 5 seeds: v ≤ 0.02 here, ≥ 0.16 with the noisy defense below."""
    model, x = tiny_model(bias=1.0, gain=3.0), random_images()
    labels = torch.zeros(6, dtype=torch.long)
    v = unstable_prediction_scores(model, NoDefense(), x, labels, n=20, generator=torch.Generator().manual_seed(0))
    assert ((v >= 0) & (v < 0.05)).all()
    assert not unstable_predictions(model, NoDefense(), x, labels, n=20).any()


def test_a_randomised_defense_is_unstable():
    model, x = tiny_model(bias=1.0, gain=3.0), random_images()
    labels = torch.zeros(6, dtype=torch.long)
    torch.manual_seed(0)  # the defense's own noise
    assert unstable_predictions(model, NoisyDefense(std=1.0), x, labels, n=20).all()


def test_a_loss_near_zero_makes_the_relative_change_large():
    """Pintor's v divides by |L(x)|: near the decision boundary (margin ≈ 0) a deterministic model
    fires too (documented; audit images with a clear margin)."""
    model, x = tiny_model(gain=3.0), random_images()
    labels = torch.zeros(6, dtype=torch.long)
    margins = audit.margin_loss(model(x), labels).detach().abs()
    fired = unstable_predictions(model, NoDefense(), x, labels, n=20, generator=torch.Generator().manual_seed(0))
    assert fired[margins.argmin()] and not fired[margins.argmax()]  # |margin| 0.016 vs 0.46: v 0.34 vs 0.007


def test_probes_stay_in_the_attackers_region():
    """With the probes on the patch only, a model that ignores the patch sees no change at all
    (up to float rounding between batch sizes)."""
    x, mask = patched_images()

    class Blind(nn.Module):  # the model with the patch area blacked out
        def __init__(self):
            super().__init__()
            self.inner = tiny_model(bias=3.0)

        def forward(self, z):
            return self.inner(z * ~mask)

    v = unstable_prediction_scores(Blind(), NoDefense(), x, torch.zeros(6, dtype=torch.long), n=5, mask=mask)
    assert (v < 1e-6).all()
    assert (unstable_prediction_scores(Blind(), NoDefense(), x, torch.zeros(6, dtype=torch.long), n=5) > 1e-4).all()


# ---- 3. silent success ---------------------------------------------------------------------


def test_silent_success_per_image():
    trace = torch.tensor([[False, True, False],  # adversarial at step 1, returned clean: silent
                          [False, False, False],  # never adversarial
                          [False, True, True]])  # adversarial and returned so
    final = torch.tensor([False, False, True])
    assert silent_success(trace, final).tolist() == [True, False, False]


def test_silent_success_of_a_universal_patch_from_its_snapshot_rates():
    rates = torch.tensor([[0.1, 0.6, 0.3], [0.1, 0.2, 0.3]])
    final = torch.tensor([0.3, 0.3])
    assert silent_success(rates, final, interval=0.1).tolist() == [True, False]
    assert silent_success(rates, final, interval=0.4).tolist() == [False, False]


# ---- 4. incomplete optimization ------------------------------------------------------------


def test_pintors_normalisation_rescales_then_takes_the_running_minimum():
    got = running_min_rescaled(torch.tensor([2.0, 4.0, 1.0, 3.0, 0.0]))
    assert got.tolist() == [0.5, 0.5, 0.25, 0.25, 0.0]


def test_converged_and_still_falling_losses():
    t = torch.arange(1000, dtype=torch.float64)
    converged = torch.exp(-t / 50)  # at its floor long before the last 10 %
    too_small_steps = 1 - t / 1000  # still falling at the same rate: the last 10 % span 0.1
    noisy = converged + 0.01 * torch.rand(1000, generator=torch.Generator().manual_seed(0))
    got = incomplete_optimization(torch.stack([converged, too_small_steps, noisy]))
    assert got.tolist() == [False, True, False]
    assert incomplete_optimization(too_small_steps).item() is True  # a 1-D trace gives a 0-d result


def test_step_size_zero_is_a_blind_spot():
    """Step size 0 leaves the loss flat from step 0: rescaled by its running minimum it is all
    zeros, which reads as *complete* (documented; unavailable_gradients / unconstrained_failure
    catch that attack). A nearly-0 step size, still falling, is caught."""
    flat = torch.full((200,), 2.3)
    creeping = 2.3 - 1e-6 * torch.arange(200, dtype=torch.float64)
    assert incomplete_optimization(torch.stack([flat, creeping])).tolist() == [False, True]


def test_the_window_fraction_and_pintors_ten_steps_agree_at_100_steps():
    trace = torch.cat([torch.linspace(1, 0.2, 90), torch.linspace(0.2, 0.1, 10)])  # last 10 span 0.1/0.9
    assert incomplete_optimization(trace).item() and incomplete_optimization(trace, last=10).item()
    long = torch.cat([trace, torch.full((900,), 0.1)])  # then 900 flat steps
    assert not incomplete_optimization(long).item() and not incomplete_optimization(long, last=10).item()


def test_a_non_finite_loss_fires():
    assert incomplete_optimization(torch.tensor([1.0, 0.5, math.nan, 0.4])).item()


# ---- 5.-8. cell-level checks ----------------------------------------------------------------


def test_transfer_failure():
    assert transfer_failure(0.6, 0.4, 0.1).item()  # the transferred patch does 20 points better
    assert not transfer_failure(0.6, 0.4, 0.25).item()  # within the interval
    assert transfer_failure([0.6, 0.3], [0.4, 0.5], [0.1, 0.1]).tolist() == [True, False]


def test_unconstrained_failure():
    correct = torch.ones(100, dtype=torch.bool)
    four_fail = torch.arange(100) >= 4
    six_fail = torch.arange(100) >= 6
    got = unconstrained_failure(torch.stack([four_fail, six_fail]), torch.stack([correct, correct]))
    assert got.tolist() == [False, True]
    # failures on misclassified images do not count; a cell with no correct image cannot fail
    assert not unconstrained_failure(four_fail & six_fail, torch.arange(100) >= 6).item()
    assert not unconstrained_failure(torch.zeros(5, dtype=torch.bool), torch.zeros(5, dtype=torch.bool)).item()


def test_non_monotonic():
    assert not non_monotonic([0.8, 0.6, 0.4], 0.05).item()
    assert non_monotonic([0.8, 0.4, 0.6], 0.05).item()  # the bigger patch leaves more accuracy
    assert not non_monotonic([0.8, 0.4, 0.6], 0.15).item()  # intervals overlap
    drift = [0.5, 0.55, 0.6, 0.65]  # each step within the intervals, the sweep not
    assert non_monotonic(drift, 0.04).item()
    assert non_monotonic([[0.8, 0.6, 0.4], [0.4, 0.6, 0.8]], 0.05).tolist() == [False, True]


def test_random_beats_gradient():
    assert random_beats_gradient(0.3, 0.5, 0.1).item()  # random search leaves 20 points less
    assert not random_beats_gradient(0.5, 0.3, 0.1).item()
    assert not random_beats_gradient(0.45, 0.5, 0.1).item()


def test_accuracies_are_checked():
    with pytest.raises(PatchbenchError, match=r"transfer_acc must be accuracies in \[0, 1\]"):
        transfer_failure(0.5, 40.0)
    with pytest.raises(PatchbenchError, match="interval must be >= 0"):
        random_beats_gradient(0.5, 0.5, -0.1)


# ---- registry ------------------------------------------------------------------------------


def test_registry_names_a_function_a_bool_column_and_a_remedy_for_each_indicator():
    assert len(INDICATORS) == len(set(AUDIT_COLUMNS)) == 9
    for name, ind in INDICATORS.items():
        assert ind.name == name and ind.column == f"audit_{name}"
        assert callable(getattr(audit, ind.function))
        assert ind.remedies and set(ind.remedies) <= set(REMEDIES)
        assert ind.explains and ind.threshold and ind.run_instead


def test_each_kind_of_cell_gets_a_remedy_and_an_adaptive_cell_never_the_adaptive_attack():
    """An adaptive cell already ran the adaptive attack with the defense's declared gradient: where an
    indicator says its gradient misled it, the remedy replaces that gradient (BPDA / EOT)."""
    for ind in INDICATORS.values():
        for kind in CELL_KINDS:
            remedies, words = ind.remedy(kind)
            assert remedies and set(remedies) <= set(REMEDIES) and words, (ind.name, kind)
        adaptive, words = ind.remedy(ADAPTIVE_CELL)
        assert ADAPTIVE not in adaptive, ind.name
        assert "an adaptive attack" not in words and "attack the defense adaptively" not in words, ind.name
    for name in ("unavailable_gradients", "transfer_failure", "unconstrained_failure"):
        assert set(INDICATORS[name].remedy(ADAPTIVE_CELL)[0]) >= {BPDA, EOT}
        assert ADAPTIVE in INDICATORS[name].remedy(TRANSFER)[0]  # a transferred patch: run the adaptive attack
    assert cell_kind("lgs", "lgs") == ADAPTIVE_CELL and cell_kind("none", "lgs") == UNDEFENDED
    assert cell_kind("lgs", None) == TRANSFER and cell_kind("none", None) == UNDEFENDED


def test_the_instability_threshold_is_relative_to_the_undefended_pipeline():
    """Near the decision boundary the undefended pipeline's own v is large (Pintor divides by |L(x)|);
    a defense that leaves the loss as it is (Gaussian filter with σ = 0, the identity) adds nothing to
    it on the same probes, and a randomised one does."""
    model, x = tiny_model(gain=3.0), random_images()
    labels = torch.zeros(6, dtype=torch.long)

    def v(defense):
        torch.manual_seed(0)  # a randomised defense's own noise
        return unstable_prediction_scores(model, defense, x, labels, n=20, generator=torch.Generator().manual_seed(0))

    own = v(NoDefense())
    assert own.max() > UNSTABLE_THRESHOLD  # the old absolute threshold fired on the undefended pipeline itself
    assert (v(GaussianFilter(sigma=0.0)) - own).mean() == 0
    assert (v(NoisyDefense(std=1.0)) - own).mean() > UNSTABLE_THRESHOLD
