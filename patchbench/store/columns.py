"""The columns of a stored cell, declared by whoever writes them.

The core declares its own below; an attack or a paper plugin declares the extra columns it writes
(``patchbench.api.declare_columns``), e.g. the values it passes to ``evaluate_conditions(**extra)``.
The store writes every declared column and refuses a row with an undeclared one or with a value of
the wrong type. A column that is ``key`` is part of the cell's run id: where its value is None (the
default of every column) it is left out of the id, so declaring a new key column renames no stored
cell. ``patch_meta``: the column is copied from that key of a patch's metadata.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from patchbench.errors import PatchbenchError

DTYPES = {"str": (str,), "int": (numbers.Integral,), "float": (numbers.Real,), "bool": (bool,)}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # str | int | float | bool; None (missing) is always allowed
    key: bool = False  # part of the cell's run id
    patch_meta: str | None = None  # copied from this key of the patch's metadata
    owner: str = ""  # who declared it: "core", an attack or a paper

    def accepts(self, value: Any) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return True
        return isinstance(value, DTYPES[self.dtype]) and (self.dtype == "bool" or not isinstance(value, bool))


_DECLARED: dict[str, Column] = {}


def declare_columns(owner: str, *columns: Column) -> None:
    """Declare the result columns ``owner`` writes. Declaring the same column again is a no-op;
    a name already declared differently (or by another owner) is refused."""
    for c in columns:
        c = Column(c.name, c.dtype, c.key, c.patch_meta, owner)
        if c.dtype not in DTYPES:
            raise PatchbenchError(f"result column {c.name!r} of {owner}: dtype must be one of {', '.join(DTYPES)}, got {c.dtype!r}")
        known = _DECLARED.get(c.name)
        if known is not None and known != c:
            raise PatchbenchError(f"result column {c.name!r} is declared twice: by {known.owner} and by {owner}")
        _DECLARED[c.name] = c


def columns() -> list[Column]:
    """Every declared column, in declaration order (the order of a stored cell's columns)."""
    return list(_DECLARED.values())


def column_names() -> list[str]:
    return list(_DECLARED)


def key_columns() -> list[str]:
    return [c.name for c in _DECLARED.values() if c.key]


def patch_meta_columns() -> dict[str, str]:
    """Column -> the patch metadata key it is copied from."""
    return {c.name: c.patch_meta for c in _DECLARED.values() if c.patch_meta}


# the columns every stored cell holds: its core identity and counts, written by every patchbench since the
# columns were declared. A cell file lacking one is not a cell (cellfiles.read_cell_file refuses it). Never add a
# column here that older cells lack: they would all be recomputed.
REQUIRED = ("dataset", "split", "eval_n", "model", "model_id", "attack", "defense", "condition", "n", "correct",
            "accuracy", "run_id")


def check_row(row: dict[str, Any]) -> None:
    """A one-line PatchbenchError for the first undeclared column or mistyped value of ``row``."""
    for name, value in row.items():
        c = _DECLARED.get(name)
        if c is None:
            raise PatchbenchError(f"result column {name!r} is not declared; declare it with "
                                  "patchbench.api.declare_columns(owner, Column(name, dtype, key=...))")
        if not c.accepts(value):
            raise PatchbenchError(f"result column {name!r} ({c.owner}) holds {type(value).__name__} {value!r}, "
                                  f"declared {c.dtype}")


def _core(dtype: str, names: str, **kw) -> list[Column]:
    return [Column(n, dtype, **kw) for n in names.split()]


# the cell's identity: every field that changes the numbers (amp: autocast dtype of the prediction
# passes; None = fp32)
declare_columns(
    "core",
    *_core("str", "dataset split", key=True), *_core("int", "eval_n eval_seed image_size", key=True),
    *_core("str", "model model_id attack attack_params", key=True), *_core("int", "patch_px target", key=True),
    *_core("str", "placement patch_id defense defense_params", key=True), Column("lam", "float", key=True),
    Column("condition", "str", key=True), Column("amp", "str", key=True),
    *_core("str", "preset training attack_label"),
    # evasion: the training seed of the cell's model (several seeds per objective: Preset.training_seeds;
    # the model_id already tells the models apart; missing in cells written before the column existed)
    Column("train_seed", "int"),
    # the patch's training seed, the optimisation step a snapshot patch was taken at and the defense
    # it was optimised through (adaptive attacks; None for ordinary patches)
    Column("attack_seed", "int", patch_meta="seed"), Column("attack_step", "int", patch_meta="attack_step"),
    Column("attack_through", "str", patch_meta="attack_through"), Column("patch_area_pct", "float"),
    *_core("int", "n correct"), *_core("float", "accuracy"),
    # mean cross-entropy over the cell's images and its per-image standard deviation
    *_core("float", "loss loss_std ci_low ci_high"),
    *_core("int", "n_nontarget target_hits"), Column("attack_success_rate", "float"),
    # attacked cells (BMVC 2023 α/β)
    *_core("int", "n_clean_correct kept_correct"), Column("defense_success_rate", "float"),
    Column("ssim", "float"), Column("ssim_n", "int"),
    # a certifying defense (PatchCleanser): images certified robust for their true label, and their share
    Column("n_certified", "int"), Column("certified_accuracy", "float"), Column("seconds", "float"),
    # the share of pixels a defense's maps["mask"] marks (DW's inpainted region, SLGS's), mean over
    # the cell's images, in %; None for a defense without a mask
    Column("masked_pct", "float"),
    *_core("str", "device run_id git_sha version created"),
    # the machine the cell was computed on (patchbench.devices.machine; missing in cells written before it)
    Column("cpu", "str"), Column("threads", "int"), Column("torch", "str"),
    # True where the defenses' inner loops ran compiled (``patchbench --compile``; missing in older cells)
    Column("compiled", "bool"),
)
