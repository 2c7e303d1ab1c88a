"""Attack-failure audit: is a cell's robustness number an attack that failed?

Pure, batched torch functions, one indicator each, after Pintor et al. 2022's indicators of attack
failure, adapted to patches. Above the defenses and attacks; nothing in patchbench imports it yet.
"""

from patchbench.audit.gradients import AS_WRITTEN, DECLARED, ZERO_GRAD_ATOL, input_gradient, unavailable_gradients  # noqa: F401
from patchbench.audit.pipeline import cross_entropy, margin_loss  # noqa: F401
from patchbench.audit.stability import (  # noqa: F401
    UNSTABLE_N,
    UNSTABLE_SIGMA,
    UNSTABLE_THRESHOLD,
    unstable_prediction_scores,
    unstable_predictions,
)
