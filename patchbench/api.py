"""The public surface for plugins: what a paper folder (``patchbench/papers/<paper>/``, or a plugin
package outside patchbench, see :mod:`patchbench.plugins`) may import, and nothing else
(``tests/test_layout.py`` holds the shipped papers to it; ``__all__`` is the list). Anything not
here is internal and may move.

Grouped by what a plugin does with it:

* **declare a paper**: the contracts (:class:`Paper`, :class:`Figure`, :class:`Table`,
  :class:`TableContext`, :class:`Experiment`), its claims (:class:`Claim`, :class:`Cells`,
  :class:`Pick` and the picks that read a value from the preset; :func:`load_claims` reads them from a
  paper's ``claims.yaml``), the result columns it adds
  (:func:`declare_columns`);
* **register a defense or an attack**: the bases a class derives from (:class:`Defense`,
  :class:`Attack`, :class:`LinfAttack`, :class:`PatchAttack`, :class:`LaVAN`), listed in the plugin's
  ``DEFENSES`` / ``ATTACKS``; the registries to read (``ATTACKS``, ``DEFENSES``, ``MODELS``,
  ``METRICS``);
* **check a preset**: the schema's values a section reads, :class:`PatchbenchError` and the checks;
* **run the generic sections** a paper declares (adaptive attack, certified baseline, patch
  optimality): each its config, its check, its runner and, where it has one, its table builder;
* **run an experiment of its own**: the cached model and patches, the evaluation of conditions ×
  defenses into the store, the data it reads;
* **build a table or figure**: the formatting and audit helpers, the store's Wilson interval, PNG
  writing.
"""

import ast as _ast
import importlib as _importlib
from pathlib import Path as _Path
from typing import TYPE_CHECKING

# Where each name lives: the imports below, read by static tools and IDEs as they are and by :func:`__getattr__`,
# which imports a name's module on first use (PEP 562). A plugin that imports this module pays for what it uses,
# not for all of patchbench (torch, pandas, the engine: 3 s), and a plugin whose import fails stops the command
# before any of that loads.
if TYPE_CHECKING:
    # declare a paper: the contracts, claims and columns
    from patchbench.paper import Figure, Paper
    from patchbench.table import Table, TableContext
    from patchbench.evaluation.experiments import Experiment, refuse_grid_options
    from patchbench.claims import (
        Cells, Claim, Pick, adaptive_lambda, adaptive_size, certified_size, largest_certified, largest_lambda,
        largest_size, last, load_claims, longest_evasion, nearest_lambda, shortest_evasion, smallest_certified, smallest_size,
    )
    from patchbench.store.columns import Column, declare_columns

    # register a defense or an attack: the bases, the registries
    from patchbench.defenses import DEFENSES, Defense, NoDefense
    from patchbench.attacks import ATTACKS, Attack, LaVAN, LinfAttack, NPixel, Patch, PatchAttack
    from patchbench.models import MODELS
    from patchbench.volumization import METRICS

    # check a preset
    from patchbench.config import AttackConfig, Preset, TrainConfig, VolumizeConfig
    from patchbench.errors import PatchbenchError, check, is_int, is_number
    from patchbench.models.checks import validate_volumize
    from patchbench.training.checks import validate_train

    # run the generic sections a paper declares
    from patchbench.sections.adaptive import AdaptiveConfig, check_adaptive, run_adaptive_section
    from patchbench.sections.certified import (
        CertifiedConfig, build_certified, check_certified, run_certified_section, split_models,
    )
    from patchbench.sections.optimality import OptimalityConfig, check_optimality, run_optimality_section
    from patchbench.sections.optimality_table import build_optimality

    # run an experiment of its own: models, patches, placements, data, conditions into the store
    from patchbench.cache.models import ensure_model, trained_model_metas
    from patchbench.cache.patches import ensure_patches
    from patchbench.attacks.affine_placement import AffinePlacement
    from patchbench.attacks.regions import npixel_extent, protocol_regions
    from patchbench.data import eval_indices, get_dataset_info, load_split
    from patchbench.data.imagenet_patch import URL as IMAGENET_PATCH_URL
    from patchbench.data.imagenet_patch import candidates as imagenet_patch_candidates
    from patchbench.data.imagenet_patch import find_file as find_imagenet_patch, read as read_imagenet_patch
    from patchbench.evaluation.defense_params import defense_runs
    from patchbench.evaluation.engine import Condition, DefenseRun
    from patchbench.evaluation.grid import evaluate_conditions
    from patchbench.store.results import ResultStore, wilson_ci

    # build a table or figure
    from patchbench.table import (
        audit_legend, audit_mark, fmt_delta, fmt_pct, lam_match, machine_note, preset_cells, spread_note,
    )
    from patchbench.util import atomic_write, console, save_png
del TYPE_CHECKING  # not part of the surface

__all__ = [
    # declare a paper
    "Figure", "Paper", "Table", "TableContext", "Experiment", "refuse_grid_options",
    "Cells", "Claim", "Pick", "adaptive_lambda", "adaptive_size", "certified_size", "largest_certified",
    "largest_lambda", "largest_size", "last", "load_claims", "longest_evasion", "nearest_lambda", "shortest_evasion",
    "smallest_certified", "smallest_size", "Column", "declare_columns",
    # register a defense or an attack
    "DEFENSES", "Defense", "NoDefense", "ATTACKS", "Attack", "LaVAN", "LinfAttack", "NPixel", "Patch",
    "PatchAttack", "MODELS", "METRICS",
    # check a preset
    "AttackConfig", "Preset", "TrainConfig", "VolumizeConfig", "PatchbenchError", "check", "is_int", "is_number",
    "validate_volumize", "validate_train",
    # run the generic sections
    "AdaptiveConfig", "check_adaptive", "run_adaptive_section", "CertifiedConfig", "build_certified",
    "check_certified", "run_certified_section", "split_models", "OptimalityConfig", "check_optimality",
    "run_optimality_section", "build_optimality",
    # run an experiment of its own
    "ensure_model", "trained_model_metas", "ensure_patches", "AffinePlacement", "npixel_extent",
    "protocol_regions", "eval_indices", "get_dataset_info", "load_split", "IMAGENET_PATCH_URL",
    "imagenet_patch_candidates", "find_imagenet_patch", "read_imagenet_patch", "defense_runs", "Condition",
    "DefenseRun", "evaluate_conditions", "ResultStore", "wilson_ci",
    # build a table or figure
    "audit_legend", "audit_mark", "fmt_delta", "fmt_pct", "lam_match", "machine_note",
    "preset_cells", "spread_note", "atomic_write", "console", "save_png",
]


def _sources() -> dict[str, tuple[str, str]]:
    """Exported name -> (the module that defines it, its name there), from the ``if TYPE_CHECKING:`` imports of
    this file."""
    tree = _ast.parse(_Path(__file__).read_text(), __file__)
    block = next(node for node in tree.body if isinstance(node, _ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING")
    return {alias.asname or alias.name: (node.module, alias.name) for node in block.body
            if isinstance(node, _ast.ImportFrom) for alias in node.names}


_SOURCES = _sources()


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, own_name = _SOURCES[name]
    value = getattr(_importlib.import_module(module), own_name)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
