"""A claim as data: a paper's statement compared over two sets of stored cells (:class:`Cells`), with its
source, the paper's numbers, its direction and (for "stays close" statements) a margin.

A side's ``where`` maps result columns to values: a literal (``"lgs"``, ``2.3``; ``None`` = missing) or a
:class:`Pick` that reads the value from the preset or from the candidate cells when the claim is checked, so
a claim survives a preset whose patch sizes, λ, steps or seeds change ("the preset's largest LaVAN size",
not "10 px"). The pickers below cover the shipped papers; a plugin may write its own ``Pick(text, value)``.

The test and the verdict rules are :mod:`patchbench.claims.stats` and :mod:`patchbench.claims.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from patchbench.attacks import evasion_label
from patchbench.attacks.adaptive_lavan import settings_entry
from patchbench.errors import PatchbenchError
from patchbench.evaluation.defense_params import DEFAULT_LAMBDA

METRICS = {  # what a side measures per image, from its cell's predictions (index, label, pred[, certified][, loss])
    "correct": "accuracy",  # pred == label
    "certified": "certified accuracy",  # the certifying defense's certificate holds for the true label
    "loss": "cross-entropy",  # the per-image loss the engine stores beside the prediction
}
DIRECTIONS = ("greater", "less")
TRAIN_SEED = "train_seed"  # the training seed of an evasion cell's model, where a preset trains several per objective
# a patch and where it sits; an evasion attack's column; the model's training seed (a column used where present)
PAIR_BY = ("patch_id", "placement", "attack_label", TRAIN_SEED)


@dataclass(frozen=True)
class Pick:
    """A filter value decided when the claim is checked: ``value(preset, candidates)``, where ``candidates``
    are the side's cells that pass the filters before this one. ``text`` says what it picks, for the
    claim's description. A pick that cannot decide (the preset has no such attack) raises
    :class:`~patchbench.errors.PatchbenchError` with the reason; the claim is then not computed."""

    text: str
    value: Callable[[Any, pd.DataFrame], Any]

    def __call__(self, preset, candidates: pd.DataFrame):
        return self.value(preset, candidates)


@dataclass(frozen=True)
class Cells:
    """One side of a claim: the stored cells of the claim's preset that pass ``where`` (column -> literal or
    :class:`Pick`), and what is measured per image (``metric``, a key of :data:`METRICS`)."""

    label: str
    where: dict = field(default_factory=dict)
    metric: str = "correct"


@dataclass(frozen=True)
class Claim:
    """One checkable statement: ``a`` compared with ``b`` per image (effect = mean of a − b over the paired
    images and replicates, in percentage points for accuracies).

    * ``direction`` ``greater``: the claim is effect > −``margin`` (``margin`` 0: a > b; ``margin`` m > 0:
      a is not below b by more than m, a "stays close" statement); ``less``: effect < ``margin``.
      ``margin`` is in the metric's units (a fraction for accuracies: 0.02 = 2 pp).
    * ``presets``: per scale (``demo``, ``paper``), the preset whose cells it reads; a scale without one is
      *not computed* there.
    * ``pair_by``: the columns that tie a cell of ``a`` to one of ``b`` (the same patch and place, the same
      evasion column, the same training seed of two objectives' models); a side with a single cell is paired
      with each cell of the other (a clean cell with every patch seed). Images are always paired by their
      dataset index. Each pair is a replicate of the bootstrap.
    """

    id: str
    statement: str
    source: str  # table / figure / section of the paper
    paper_numbers: str  # the paper's numbers behind the statement
    a: Cells
    b: Cells
    presets: dict = field(default_factory=dict)
    direction: str = "greater"
    margin: float = 0.0
    pair_by: tuple = PAIR_BY
    explained: dict = field(default_factory=dict)  # scale -> the controlled experiment and its conclusion, shown
    #   when the claim does not hold there (scale, budget or defect, where it is documented)

    def __post_init__(self):
        where = f"claim {self.id!r}"
        if not (isinstance(self.id, str) and self.id and self.id.replace("-", "").replace("_", "").isalnum()):
            raise PatchbenchError(f"{where}: id must be letters, digits, - and _")
        for name in ("statement", "source", "paper_numbers"):
            if not (isinstance(getattr(self, name), str) and getattr(self, name).strip()):
                raise PatchbenchError(f"{where}: {name} must be a non-empty text")
        if self.direction not in DIRECTIONS:
            raise PatchbenchError(f"{where}: direction must be {' or '.join(DIRECTIONS)}, got {self.direction!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0):
            raise PatchbenchError(f"{where}: margin must be a number >= 0, got {self.margin!r}")
        for side in (self.a, self.b):
            if not isinstance(side, Cells):
                raise PatchbenchError(f"{where}: a and b must be Cells, got {type(side).__name__}")
            if side.metric not in METRICS:
                raise PatchbenchError(f"{where}: metric must be one of {', '.join(METRICS)}, got {side.metric!r}")
        if (self.a.metric == "loss") != (self.b.metric == "loss"):
            raise PatchbenchError(f"{where}: a loss is compared with a loss only")
        if not (isinstance(self.presets, dict) and self.presets and all(isinstance(v, str) for v in self.presets.values())):
            raise PatchbenchError(f"{where}: presets must map a scale (demo, paper) to a preset name")
        if not (isinstance(self.explained, dict) and all(k in self.presets and isinstance(v, str) and v.strip()
                                                         for k, v in self.explained.items())):
            raise PatchbenchError(f"{where}: explained must map a scale of its presets to a non-empty text")

    @property
    def binary(self) -> bool:
        return self.a.metric != "loss"

    @property
    def boundary(self) -> float:
        """The effect the claim must clear: −margin (greater) or +margin (less)."""
        return -self.margin if self.direction == "greater" else self.margin

    def rule(self) -> str:
        """What *holds* means for this claim, in words (shown with its verdict)."""
        unit = (lambda v: f"{100 * v:g} pp") if self.binary else (lambda v: f"{v:g}")
        if self.margin == 0:
            return f"{self.a.label} {'above' if self.direction == 'greater' else 'below'} {self.b.label}"
        if self.direction == "greater":
            return f"{self.a.label} not below {self.b.label} by more than {unit(self.margin)}"
        return f"{self.a.label} not above {self.b.label} by more than {unit(self.margin)}"


# ------------------------------------------------------------------------------------------------
# pickers: values read from the preset (robust to its operating points) or from the candidate cells


def _need(values, what: str):
    if not values:
        raise PatchbenchError(f"the preset has no {what}")
    return values


def _sizes(preset, attack: str) -> list[int]:
    return _need([s for a in preset.attacks if a.name == attack for s in a.sizes], f"{attack} attack")


def largest_size(attack: str) -> Pick:
    """The largest patch side of the preset's ``attack`` entries."""
    return Pick(f"the preset's largest {attack} size", lambda p, _c: max(_sizes(p, attack)))


def smallest_size(attack: str) -> Pick:
    return Pick(f"the preset's smallest {attack} size", lambda p, _c: min(_sizes(p, attack)))


def largest_lambda(defense: str) -> Pick:
    """The largest λ of the preset's ``defense`` entry."""
    def value(p, _c):
        return max(_need([float(v) for d in p.defenses if d.name == defense for v in d.lambdas], f"{defense} defense with λ"))
    return Pick(f"the preset's largest {defense} λ", value)


def nearest_lambda(defense: str, lam: float) -> Pick:
    """The λ of the preset's ``defense`` grid nearest ``lam`` (the paper's λ, kept if the grid moves)."""
    def value(p, _c):
        grid = _need([float(v) for d in p.defenses if d.name == defense for v in d.lambdas], f"{defense} defense with λ")
        return min(grid, key=lambda v: (abs(v - lam), v))
    return Pick(f"the {defense} λ of the preset nearest {lam:g}", value)


def section_value(section: str, name: str, default=None) -> Pick:
    """A field of one of the preset's paper sections (``adaptive.lam``), or ``default`` without the section."""
    def value(p, _c):
        sec = p.extra.get(section)
        if sec is None:
            if default is None:
                raise PatchbenchError(f"the preset has no {section}: section")
            return default
        return getattr(sec, name)
    return Pick(f"the preset's {section}.{name}" + (f" (else {default})" if default is not None else ""), value)


def adaptive_lambda(defense: str) -> Pick:
    """The λ the preset's adaptive attack runs ``defense`` at (:mod:`patchbench.sections.adaptive`: ``adaptive.lam``, else
    the defense's largest λ); without an ``adaptive:`` section, the defenses' default λ (2.3)."""

    def value(p, _c):
        sec = p.extra.get("adaptive")
        if sec is None:
            return DEFAULT_LAMBDA
        if sec.lam is not None:
            return float(sec.lam)
        return largest_lambda(defense)(p, _c)
    return Pick(f"the adaptive attack's λ for {defense} (else {DEFAULT_LAMBDA})", value)


def adaptive_size() -> Pick:
    """The patch side of the preset's adaptive attack: ``adaptive.size``, else the largest size of its first
    ``lavan`` entry (else its first attack entry), as :mod:`patchbench.sections.adaptive` picks it."""
    def value(p, _c):
        sec = p.extra.get("adaptive")
        if sec is None or not sec.defenses:
            raise PatchbenchError("the preset has no adaptive: section")
        if sec.size is not None:
            return int(sec.size)
        entry = settings_entry(p.attacks)
        return max(_need(entry.sizes if entry else [], "patch attack"))
    return Pick("the preset's adaptive attack size", value)


def _evasion(preset, name: str, pick) -> str:
    entries = _need([e for e in preset.evasion if e.name == name and not e.trainings], f"{name} evasion column")
    return evasion_label(pick(entries, key=lambda e: (e.steps or 0)))


def longest_evasion(name: str) -> Pick:
    """The column label (``CW100``) of the preset's ``name`` evasion entry with the most steps."""
    return Pick(f"the preset's longest {name}", lambda p, _c: _evasion(p, name, max))


def shortest_evasion(name: str) -> Pick:
    return Pick(f"the preset's shortest {name}", lambda p, _c: _evasion(p, name, min))


def _certified(preset) -> list[int]:
    cfg = _need([preset.extra.get("certified")] if preset.extra.get("certified") else [], "certified: section")[0]
    return sorted(set(cfg.sizes or [s for a in preset.attacks for s in a.sizes]))


def smallest_certified() -> Pick:
    return Pick("the preset's smallest certified patch", lambda p, _c: min(_certified(p)))


def largest_certified() -> Pick:
    return Pick("the preset's largest certified patch", lambda p, _c: max(_certified(p)))


def certified_size(area_pct: float) -> Pick:
    """The preset's certified patch side whose area is nearest ``area_pct`` % of the image (the paper's operating
    point, e.g. PatchCleanser's 2 %-pixel patch)."""
    def value(p, _c):
        side = p.data.image_size
        return min(_certified(p), key=lambda s: (abs(100 * s * s / side ** 2 - area_pct), s))
    return Pick(f"the preset's certified patch nearest {area_pct:g} % of the image", value)


def last(column: str) -> Pick:
    """The largest value of ``column`` among the candidate cells (an adaptive attack's last step)."""
    def value(_p, cells):
        if column not in cells or not cells[column].notna().any():
            raise PatchbenchError(f"no stored cell has an {column}")
        return cells[column].max()
    return Pick(f"the last {column}", value)
