"""Attack-failure audit: is a cell's robustness number an attack that failed?

Pure, batched torch functions, one indicator each (Pintor et al. 2022's six indicators of attack
failure, adapted to patches, two checks of Carlini et al. 2019's checklist, and the AutoAttack gap
of Croce & Hein 2020), and the registry of what each means and what to run instead
(:data:`INDICATORS`, result columns :data:`AUDIT_COLUMNS`). Above the defenses and attacks; the
tables read its registry; the preset's ``audit:`` section (:mod:`patchbench.sections.audit`) and the
AutoAttack cross-check (:mod:`patchbench.runner.autoattack`) run it on stored results.

=========================  ========================  ============================================
module                     functions                 reads
=========================  ========================  ============================================
:mod:`.gradients`          unavailable_gradients     model, defense, images (a gradient)
:mod:`.stability`          unstable_predictions      model, defense, images (random probes)
:mod:`.traces`             silent_success,           what the attack recorded per step
                           incomplete_optimization
:mod:`.comparisons`        transfer_failure,         accuracies of the cell and its neighbours
                           unconstrained_failure,
                           non_monotonic,
                           random_beats_gradient,
                           autoattack_gap
:mod:`.runs`               cell_runs                 which training run produced each cell's patch
                                                     (its traces are that run's, not the pixels')
:mod:`.verdicts`           cell_verdicts             a patch grid's stored cells and its patches'
                                                     traces (transfer, monotonicity, traces, the
                                                     attack's outcome)
:mod:`.probes`             gradient_probes,          model, defenses, patches, images (batched
                           stability_probes          gradient and instability probes)
:mod:`.incremental`        input_key, reusable       the stored verdicts: which cells to probe again
=========================  ========================  ============================================
"""

from patchbench.audit.comparisons import (  # noqa: F401
    UNCONSTRAINED_THRESHOLD,
    autoattack_gap,
    non_monotonic,
    random_beats_gradient,
    transfer_failure,
    unconstrained_failure,
)
from patchbench.audit.gradients import AS_WRITTEN, DECLARED, ZERO_GRAD_ATOL, input_gradient, unavailable_gradients  # noqa: F401
from patchbench.audit.indicators import (  # noqa: F401
    ADAPTIVE,
    ADAPTIVE_CELL,
    AUDIT_ATTACK_FAILED,
    AUDIT_AUTOATTACK_GAP,
    AUDIT_COLUMNS,
    AUDIT_INCOMPLETE_OPTIMIZATION,
    AUDIT_NON_MONOTONIC,
    AUDIT_RANDOM_BEATS_GRADIENT,
    AUDIT_SILENT_SUCCESS,
    AUDIT_TRANSFER_FAILURE,
    AUDIT_UNAVAILABLE_GRADIENTS,
    AUDIT_UNCONSTRAINED_FAILURE,
    AUDIT_UNSTABLE_PREDICTIONS,
    AUDIT_VERSION,
    BPDA,
    CELL_KINDS,
    EOT,
    INDICATORS,
    TRANSFER,
    TUNE,
    UNDEFENDED,
    Indicator,
    cell_kind,
)
from patchbench.audit.pipeline import cross_entropy, margin_loss  # noqa: F401
from patchbench.audit.stability import (  # noqa: F401
    UNSTABLE_N,
    UNSTABLE_SIGMA,
    UNSTABLE_THRESHOLD,
    unstable_prediction_scores,
    unstable_predictions,
)
from patchbench.audit.traces import (  # noqa: F401
    INCOMPLETE_LAST,
    INCOMPLETE_TOLERANCE,
    incomplete_optimization,
    running_min_rescaled,
    silent_success,
)
