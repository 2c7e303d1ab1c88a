"""The public surface for plugins: everything a paper folder (``patchbench/papers/<paper>/``, or a
plugin package outside patchbench, see :mod:`patchbench.plugins`) may import, in one place (a
test holds the shipped papers to it). Anything else is internal and may move.

Grouped by job: the plugin contract (with its claims: :mod:`patchbench.claims.spec`), presets and errors, data, models and attacks (with the bases
a plugin's attack derives from), defenses (with their base), the adaptive attack, the certified
baseline and the patch-optimality section as preset steps,
cached artifacts and evaluation grids, stored results and the columns a plugin adds to them
(``declare_columns``), and the table helpers.
"""

from patchbench.sections.adaptive import AdaptiveConfig, check_adaptive, curves, run_adaptive, run_adaptive_section  # noqa: F401
from patchbench.attacks import (  # noqa: F401
    ATTACKS, AdaptiveLaVAN, Attack, LaVAN, LinfAttack, NPixel, Patch, PatchAttack, Placement, attack_class,
)
from patchbench.attacks.affine_placement import AffinePlacement  # noqa: F401
from patchbench.attacks.regions import npixel_extent, protocol_regions  # noqa: F401
from patchbench.claims import (  # noqa: F401
    Cells, Claim, Pick, adaptive_lambda, adaptive_size, certified_size, largest_certified, largest_lambda,
    largest_size, last, longest_evasion, nearest_lambda, section_value, shortest_evasion, smallest_certified,
    smallest_size,
)
from patchbench.sections.certified import (  # noqa: F401
    CertifiedConfig, build_certified, check_certified, run_certified_section, split_models,
)
from patchbench.cache.models import LoadedModel, ensure_model, trained_model_metas, with_training  # noqa: F401
from patchbench.cache.patches import (  # noqa: F401
    check_target, ensure_patches, patch_batches, patch_candidates, selection_indices,
)
from patchbench.store.columns import Column, declare_columns  # noqa: F401
from patchbench.config import (  # noqa: F401
    AttackConfig, Preset, TrainConfig, VolumizeConfig, cache_hash, key_fields, stable_hash,
)
from patchbench.data import eval_indices, get_dataset_info, iterate, load_split  # noqa: F401
from patchbench.data.imagenet_patch import URL as IMAGENET_PATCH_URL  # noqa: F401
from patchbench.data.imagenet_patch import ImageNetPatchSet, candidates as imagenet_patch_candidates  # noqa: F401
from patchbench.data.imagenet_patch import find_file as find_imagenet_patch, read as read_imagenet_patch  # noqa: F401
from patchbench.evaluation.defense_params import DEFAULT_LAMBDA, defense_runs, resolve_defense  # noqa: F401
from patchbench.defenses import DEFENSES, Defense, NoDefense  # noqa: F401
from patchbench.evaluation.engine import Condition, DefenseRun  # noqa: F401
from patchbench.errors import PatchbenchError, check, is_int, is_number  # noqa: F401
from patchbench.evaluation.experiments import Experiment, refuse_grid_options  # noqa: F401
from patchbench.evaluation.grid import evaluate_conditions  # noqa: F401
from patchbench.models import MODELS  # noqa: F401
from patchbench.models.checks import validate_volumize  # noqa: F401
from patchbench.paper import Figure, Paper  # noqa: F401
from patchbench.store.results import ResultStore, wilson_ci  # noqa: F401
from patchbench.sections.optimality import OptimalityConfig, check_optimality, run_optimality_section  # noqa: F401
from patchbench.sections.optimality_table import build_optimality  # noqa: F401
from patchbench.table import (  # noqa: F401
    Table, TableContext, audit_legend, audit_mark, fmt_acc_ci, fmt_delta, fmt_pct, lam_match, machine_note, preset_cells,
    spread_note,
)
from patchbench.training.checks import validate_train  # noqa: F401
from patchbench.util import atomic_write, console, save_png  # noqa: F401
from patchbench.volumization import METRICS  # noqa: F401
