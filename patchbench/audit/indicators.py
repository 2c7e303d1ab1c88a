"""The indicators an audit computes per cell: name -> what it means, where it comes from, what to run
instead, and the (bool) result column it writes.

Six indicators of attack failure from Pintor et al. 2022 ("Indicators of Attack Failure:
Debugging and Improving Optimization of Adversarial Examples", NeurIPS 2022; reference code
pralab/IndicatorsOfAttackFailure), two checks from Carlini et al. 2019's checklist ("On
Evaluating Adversarial Robustness") and the AutoAttack cross-check of ε-bounded cells (Croce &
Hein 2020, ICML; run by :mod:`patchbench.runner.autoattack`). Each column is True where the indicator fires: the number
the cell reports is then an over-estimate of robustness until the remedy has been run.

The columns are declared here as names only; whoever writes them declares them with the store
(``patchbench.store.columns.declare_columns(owner, Column(name, "bool"), ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from patchbench.audit.comparisons import UNCONSTRAINED_THRESHOLD
from patchbench.audit.gradients import ZERO_GRAD_ATOL
from patchbench.audit.stability import UNSTABLE_N, UNSTABLE_SIGMA, UNSTABLE_THRESHOLD
from patchbench.audit.traces import INCOMPLETE_LAST, INCOMPLETE_TOLERANCE

# what to run instead (Athalye et al. 2018's names for the first three)
ADAPTIVE = "adaptive"  # white-box through the defense with its declared gradient (lavan-adaptive)
BPDA = "bpda"  # backward pass as the identity through a non-differentiable step
EOT = "eot"  # expectation over transformation: average the loss over the defense's randomness
TUNE = "tune"  # the same attack, better run: more steps / step size / restarts / keep the best iterate
REMEDIES = (ADAPTIVE, BPDA, EOT, TUNE)

PINTOR = "Pintor et al. 2022"
CARLINI = "Carlini et al. 2019"
CROCE = "Croce & Hein 2020"

AUDIT_UNAVAILABLE_GRADIENTS = "audit_unavailable_gradients"
AUDIT_UNSTABLE_PREDICTIONS = "audit_unstable_predictions"
AUDIT_SILENT_SUCCESS = "audit_silent_success"
AUDIT_INCOMPLETE_OPTIMIZATION = "audit_incomplete_optimization"
AUDIT_TRANSFER_FAILURE = "audit_transfer_failure"
AUDIT_UNCONSTRAINED_FAILURE = "audit_unconstrained_failure"
AUDIT_NON_MONOTONIC = "audit_non_monotonic"
AUDIT_RANDOM_BEATS_GRADIENT = "audit_random_beats_gradient"
AUDIT_AUTOATTACK_GAP = "audit_autoattack_gap"


@dataclass(frozen=True)
class Indicator:
    name: str
    column: str  # the cell's bool result column
    source: str  # PINTOR, CARLINI or CROCE
    function: str  # the patchbench.audit function that computes it
    explains: str  # what a firing indicator says about the evaluation
    threshold: str  # when it fires, with the constant's value
    remedies: tuple[str, ...]  # what to run instead, from REMEDIES
    run_instead: str  # the remedy in words


INDICATORS: dict[str, Indicator] = {i.name: i for i in (
    Indicator("unavailable_gradients", AUDIT_UNAVAILABLE_GRADIENTS, PINTOR, "unavailable_gradients",
              "the defended pipeline, differentiated as written, gives the attacker no gradient on its pixels",
              f"∂L/∂x missing, raising, non-finite or max |∂L/∂x| <= {ZERO_GRAD_ATOL:g} on the patch",
              (ADAPTIVE, BPDA),
              "an adaptive attack with the defense's declared gradient (BPDA where it is not differentiable)"),
    Indicator("unstable_predictions", AUDIT_UNSTABLE_PREDICTIONS, PINTOR, "unstable_predictions",
              "the loss jumps under tiny random input changes (a randomised or rugged defense): steps are noise",
              f"mean relative loss change over {UNSTABLE_N} uniform probes of width {UNSTABLE_SIGMA:.4f} "
              f"> {UNSTABLE_THRESHOLD:g}",
              (EOT,),
              "an EOT attack: average the loss (and gradient) over the defense's randomness"),
    Indicator("silent_success", AUDIT_SILENT_SUCCESS, PINTOR, "silent_success",
              "the attack passed through an adversarial point but returned a non-adversarial one",
              "some recorded step adversarial (or a better success rate), the returned result not",
              (TUNE,),
              "the same attack returning its best (adversarial) iterate, or stopping at the first success"),
    Indicator("incomplete_optimization", AUDIT_INCOMPLETE_OPTIMIZATION, PINTOR, "incomplete_optimization",
              "the attack stopped while its loss was still falling",
              f"running-minimum loss rescaled to [0, 1] spans > {INCOMPLETE_TOLERANCE:g} over the last "
              f"{INCOMPLETE_LAST:.0%} of the steps",
              (TUNE,),
              "the same attack with more steps or a larger step size"),
    Indicator("transfer_failure", AUDIT_TRANSFER_FAILURE, PINTOR, "transfer_failure",
              "the attack was scored on a model it did not optimise against and did not carry over: a patch "
              "trained on the undefended model fools it far more than the defended one, or beats the white-box "
              "attack through the defense",
              "defended − undefended accuracy of the same patch (non-adaptive cell), or adaptive − non-adaptive "
              "accuracy (adaptive cell), > the interval",
              (ADAPTIVE, BPDA),
              "an adaptive attack through the defense (BPDA where it is not differentiable)"),
    Indicator("unconstrained_failure", AUDIT_UNCONSTRAINED_FAILURE, PINTOR, "unconstrained_failure",
              "with the budget lifted (half-image patch, ε = 1) the attack still misses correct images",
              f"the unbounded attack fails on > {UNCONSTRAINED_THRESHOLD:.0%} of the correctly classified images",
              (ADAPTIVE, TUNE),
              "debug the attack (loss, step size, steps) or attack the defense adaptively"),
    Indicator("non_monotonic", AUDIT_NON_MONOTONIC, CARLINI, "non_monotonic",
              "accuracy rises with the patch size or ε: the attack failed at the larger budget",
              "a larger budget's accuracy above a smaller one's by more than both half-widths",
              (TUNE, ADAPTIVE),
              "the larger budgets with more steps / restarts, or an adaptive attack"),
    Indicator("random_beats_gradient", AUDIT_RANDOM_BEATS_GRADIENT, CARLINI, "random_beats_gradient",
              "a gradient-free random search at equal queries beats the gradient attack: gradients are masked",
              "gradient-attack accuracy − random-search accuracy > the interval",
              (BPDA, EOT),
              "BPDA / EOT gradients, and report the random-search accuracy meanwhile"),
    Indicator("autoattack_gap", AUDIT_AUTOATTACK_GAP, CROCE, "autoattack_gap",
              "AutoAttack (torchattacks), on the same model, images and ε, leaves a lower robust accuracy: "
              "the cell's attack over-estimates robustness",
              "reported − AutoAttack accuracy > the lower half-width of the reported 95 % Wilson interval "
              "(AutoAttack below that interval)",
              (TUNE, ADAPTIVE),
              "report AutoAttack's accuracy; rerun the cell's attack with more steps / restarts (adaptively through a defense)"),
)}

AUDIT_COLUMNS: tuple[str, ...] = tuple(i.column for i in INDICATORS.values())  # all bool
