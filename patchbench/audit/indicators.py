"""The indicators an audit computes per cell: name -> what it means, where it comes from, what to run
instead, and the (bool) result column it writes.

Six indicators of attack failure from Pintor et al. 2022 ("Indicators of Attack Failure:
Debugging and Improving Optimization of Adversarial Examples", NeurIPS 2022; reference code
pralab/IndicatorsOfAttackFailure), two checks from Carlini et al. 2019's checklist ("On
Evaluating Adversarial Robustness") and the AutoAttack cross-check of ε-bounded cells (Croce &
Hein 2020, ICML; run by :mod:`patchbench.runner.autoattack`). Each column is True where the indicator fires: the number
the cell reports is then an over-estimate of robustness until the remedy has been run.

What to run instead depends on the cell (:func:`cell_kind`): a patch optimised without the defense
and evaluated through it (:data:`TRANSFER`) is told to run the adaptive attack; an adaptive cell
(:data:`ADAPTIVE_CELL`) already did, with the gradient the defense declares, so where an indicator
says that gradient misled it, its remedy replaces the gradient (BPDA, EOT; Athalye et al. 2018);
an undefended cell (:data:`UNDEFENDED`) has no defense to attack adaptively
(:meth:`Indicator.remedy`).

The columns are declared here as names only: the indicators' bool columns (:data:`AUDIT_COLUMNS`)
and what else a verdict row holds (:data:`AUDIT_ROW_COLUMNS`: notes, the audit's version, the
cell's kind and remedy, the attack's outcome, the probes' numbers and input keys). They live in the
audit's own files, not in the cells (``ResultStore.load_cells`` joins every ``audit_*`` column).
"""

from __future__ import annotations

from dataclasses import dataclass

from patchbench.audit.comparisons import UNCONSTRAINED_THRESHOLD
from patchbench.audit.gradients import ZERO_GRAD_ATOL
from patchbench.audit.stability import UNSTABLE_N, UNSTABLE_SIGMA, UNSTABLE_THRESHOLD
from patchbench.audit.traces import INCOMPLETE_LAST, INCOMPLETE_TOLERANCE
from patchbench.defenses.base import is_undefended

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


# What else a verdict row holds (not indicators; ``load_cells`` joins every ``audit_*`` column)
AUDIT_NOTES = "audit_notes"  # str: one sentence per firing indicator, with its numbers ("" where none fires)
AUDIT_VERSION_COLUMN = "audit_version"  # int: the AUDIT_VERSION that wrote the row
AUDIT_KIND = "audit_kind"  # str: the cell's kind (CELL_KINDS): which remedy fits it
AUDIT_REMEDY = "audit_remedy"  # str: what to run instead, for this cell's kind and firing indicators ("" where none)
AUDIT_ATTACK_FAILED = "audit_attack_failed"  # bool: the attack failed on the cell (unstable predictions' condition)
AUDIT_UNSTABLE_EXCESS = "audit_unstable_excess"  # float: Pintor's v through the defense − v undefended, same probes
AUDIT_GRADIENT_MISSING = "audit_gradient_missing"  # int: of the audit_n images, those with no gradient on the patch
AUDIT_INPUT_KEY = "audit_input_key"  # str: hash of what the cell's image-level probes read (reused while unchanged)
AUDIT_STABILITY_KEY = "audit_stability_key"  # str: hash of what its instability score read (shared across cells)
AUDIT_IMAGES, AUDIT_PROBES, AUDIT_SECONDS = "audit_n", "audit_probes", "audit_seconds"  # images, probes per image, s
AUDIT_ROW_COLUMNS: tuple[str, ...] = (AUDIT_NOTES, AUDIT_VERSION_COLUMN, AUDIT_KIND, AUDIT_REMEDY, AUDIT_ATTACK_FAILED,
                                      AUDIT_UNSTABLE_EXCESS, AUDIT_GRADIENT_MISSING, AUDIT_INPUT_KEY,
                                      AUDIT_STABILITY_KEY, AUDIT_IMAGES, AUDIT_PROBES, AUDIT_SECONDS)

# The audit's own version, stored in every verdict row: bump it whenever a change to the audit's
# logic can change a verdict, so the next sweep re-audits every cell once (rows of an older version
# are recomputed; rows of this version whose inputs are unchanged are reused as they are).
# 1: verdicts by content id, no version column; 2: traces keyed by run, unstable
# predictions conditioned on the attack's outcome and relative to the undefended pipeline, remedies by kind.
AUDIT_VERSION = 2

# The kinds of attacked cell, which decide what to run instead
UNDEFENDED = "undefended"  # the patch on the model without defense
TRANSFER = "transfer"  # a patch optimised without the defense, evaluated through it
ADAPTIVE_CELL = "adaptive"  # a patch optimised through the defense, with the gradient it declares
CELL_KINDS = (UNDEFENDED, TRANSFER, ADAPTIVE_CELL)


def cell_kind(defense, attack_through) -> str:
    """:data:`ADAPTIVE_CELL` where the patch was optimised through this cell's defense, :data:`UNDEFENDED`
    where the cell has no defense, else :data:`TRANSFER`."""
    if isinstance(attack_through, str) and attack_through == defense and not is_undefended(defense):
        return ADAPTIVE_CELL
    return UNDEFENDED if is_undefended(defense) else TRANSFER


@dataclass(frozen=True)
class Indicator:
    name: str
    column: str  # the cell's bool result column
    source: str  # PINTOR, CARLINI or CROCE
    function: str  # the patchbench.audit function that computes it
    explains: str  # what a firing indicator says about the evaluation
    threshold: str  # when it fires, with the constant's value
    remedies: tuple[str, ...]  # what to run instead, from REMEDIES (a transferred patch's cell)
    run_instead: str  # the remedy in words (a transferred patch's cell)
    # kind -> (remedies, in words) where another kind of cell needs another remedy: an adaptive cell
    # already followed the defense's declared gradient, so "run the adaptive attack" cannot be its remedy
    by_kind: tuple[tuple[str, tuple[str, ...], str], ...] = ()

    def remedy(self, kind: str = TRANSFER) -> tuple[tuple[str, ...], str]:
        """(remedies, in words) for a cell of ``kind`` (:data:`CELL_KINDS`)."""
        for k, remedies, words in self.by_kind:
            if k == kind:
                return remedies, words
        return self.remedies, self.run_instead


# an adaptive cell's remedy where the indicator says its gradient misled it (Athalye et al. 2018)
_WRONG_GRADIENT = ("the adaptive attack already followed the defense's declared gradient, so that gradient is wrong "
                   "here: attack with BPDA (identity backward, or a closer differentiable approximation where the "
                   "declared one is BPDA already) or EOT over the defense's randomness instead of it")


INDICATORS: dict[str, Indicator] = {i.name: i for i in (
    Indicator("unavailable_gradients", AUDIT_UNAVAILABLE_GRADIENTS, PINTOR, "unavailable_gradients",
              "the defended pipeline, differentiated as written, gives the attacker no gradient on its pixels",
              f"∂L/∂x missing, raising, non-finite or max |∂L/∂x| <= {ZERO_GRAD_ATOL:g} on the patch",
              (ADAPTIVE, BPDA),
              "an adaptive attack with the defense's declared gradient (BPDA where it is not differentiable)",
              ((ADAPTIVE_CELL, (BPDA, EOT), _WRONG_GRADIENT + " (its declared gradient is zero on the patch)"),
               (UNDEFENDED, (BPDA,), "the model itself gives the patch no gradient: BPDA through its "
                                     "non-differentiable layer, or a gradient-free attack"))),
    Indicator("unstable_predictions", AUDIT_UNSTABLE_PREDICTIONS, PINTOR, "unstable_predictions",
              "the attack failed on the cell, and through the defense the loss jumps under tiny random input "
              "changes far more than without it (a randomised or rugged defense): the attack's steps were noise",
              f"the attack failed (the cell's accuracy above what it leaves without the defense, beyond the "
              f"interval) and Pintor's mean relative loss change over {UNSTABLE_N} uniform probes of width "
              f"{UNSTABLE_SIGMA:.4f} exceeds the undefended pipeline's, on the same probes, by > {UNSTABLE_THRESHOLD:g}",
              (EOT,),
              "an EOT attack: average the loss (and gradient) over the defense's randomness",
              ((ADAPTIVE_CELL, (EOT,), "EOT inside the adaptive attack: average its loss and gradient over the "
                                       "defense's randomness at every step"),)),
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
              "an adaptive attack through the defense (BPDA where it is not differentiable)",
              ((ADAPTIVE_CELL, (BPDA, EOT), _WRONG_GRADIENT + "; the transferred patches are meanwhile the "
                                                              "better attack"),)),
    Indicator("unconstrained_failure", AUDIT_UNCONSTRAINED_FAILURE, PINTOR, "unconstrained_failure",
              "with the budget lifted (half-image patch, ε = 1) the attack still misses correct images",
              f"the unbounded attack fails on > {UNCONSTRAINED_THRESHOLD:.0%} of the correctly classified images",
              (ADAPTIVE, TUNE),
              "debug the attack (loss, step size, steps) or attack the defense adaptively",
              ((ADAPTIVE_CELL, (BPDA, EOT, TUNE), _WRONG_GRADIENT + ", or debug the attack (loss, step size, steps)"),
               (UNDEFENDED, (TUNE,), "debug the attack (loss, step size, steps)"))),
    Indicator("non_monotonic", AUDIT_NON_MONOTONIC, CARLINI, "non_monotonic",
              "accuracy rises with the patch size or ε: the attack failed at the larger budget",
              "a larger budget's accuracy above a smaller one's by more than both half-widths",
              (TUNE, ADAPTIVE),
              "the larger budgets with more steps / restarts, or an adaptive attack",
              ((ADAPTIVE_CELL, (TUNE, BPDA, EOT), "the larger budgets with more steps / restarts; where that does "
                                                  "not help, " + _WRONG_GRADIENT),
               (UNDEFENDED, (TUNE,), "the larger budgets with more steps / restarts"))),
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
              "report AutoAttack's accuracy; rerun the cell's attack with more steps / restarts (adaptively through a defense)",
              ((UNDEFENDED, (TUNE,), "report AutoAttack's accuracy; rerun the cell's attack with more steps / restarts"),
               (ADAPTIVE_CELL, (TUNE, BPDA, EOT), "report AutoAttack's accuracy; rerun the cell's attack with more "
                                                  "steps / restarts, or " + _WRONG_GRADIENT))),
)}

AUDIT_COLUMNS: tuple[str, ...] = tuple(i.column for i in INDICATORS.values())  # all bool
