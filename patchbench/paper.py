"""The paper plugin contract: everything paper-specific lives in ``patchbench/papers/<paper>/``.

A plugin is a package holding its presets (``presets/*.yaml``), the published numbers
(``reference/*.csv``), its table builders and figures, and a :class:`Paper` object registered in
:data:`patchbench.papers.PAPERS` (one line). It imports only :mod:`patchbench.api`. The generic
layers (experiments, grid, engine, results, tables, config, cli) never name a paper; they ask the
registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import yaml

from patchbench.errors import PatchbenchError

if TYPE_CHECKING:
    import pandas as pd


def _nothing(*_args, **_kw):
    return []


def _itself(preset):
    return [preset]


@dataclass(frozen=True)
class Figure:
    """A figure rebuilt from stored cells: ``draw(cells, preset, out, **params) -> Path``."""

    name: str
    title: str
    draw: Callable[..., Path]


@dataclass(frozen=True)
class Paper:
    """One paper's plugin.

    * ``presets``: preset names per scale (``demo``, ``paper``) that ``reproduce`` runs;
    * ``tables``: :class:`patchbench.table.Table` per name; ``figures``: :class:`Figure` per name;
    * ``experiments``: experiment kinds only this paper runs (name -> :class:`patchbench.evaluation.experiments.Experiment`);
    * ``sections``: extra top-level preset keys this paper understands -> their dataclass
      (stored in ``Preset.extra``); ``validate(preset)`` checks them;
    * ``extra_steps(preset, store, device, progress)``: work ``reproduce`` does after the
      preset's experiment (e.g. an adaptive attack); ``report(preset, cells, out)`` writes the
      paper's figures and extra reports for a preset and returns the files;
    * ``deviations``: known deviations from the paper (short sentences: choices where the paper is
      silent, differences of the demo scale), listed in ``patchbench report``;
    * ``variants(preset)``: the presets whose model weights and datasets the preflight checks for a run of
      ``preset`` (default: the preset itself; an experiment over several models: one per model);
      ``requires(preset)``: other pieces it needs that are missing, as ``(label, what, fix)`` (e.g. a
      published file);
    * ``claims``: the paper's headline claims, each a :class:`patchbench.claims.spec.Claim` over stored cells
      (its source, statement, the paper's numbers, the preset per scale), checked by ``patchbench claims``;
    * ``spread``: per scale, one sentence with the measured spread of that scale's numbers between two
      runs that differ only in the machine (or in what a machine changes: the float order), printed
      under every table of the scale beside the machine the cells came from. A measurement is data:
      a paper leaves ``spread`` out and keeps it in ``measurements.yaml`` beside its presets
      (``spread: {demo: "..."}``), which :meth:`spread_of` reads.
    """

    name: str
    title: str
    module: str  # the plugin package, e.g. "patchbench.papers.<name>"
    presets: dict[str, tuple[str, ...]]
    tables: dict = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    sections: dict[str, type] = field(default_factory=dict)
    experiments: dict = field(default_factory=dict)  # experiment name -> experiments.Experiment this paper brings
    validate: Callable = _nothing
    extra_steps: Callable = _nothing
    report: Callable = _nothing
    deviations: tuple[str, ...] = ()
    spread: dict[str, str] = field(default_factory=dict)
    variants: Callable = _itself
    requires: Callable = _nothing
    claims: tuple = ()

    def __post_init__(self):
        from patchbench.claims.spec import Claim  # reason: it imports the attacks (torch); `patchbench --help` imports no torch

        if not all(isinstance(c, Claim) for c in self.claims):
            raise PatchbenchError(f"paper {self.name}: claims must be Claim objects (patchbench.api.Claim)")
        ids = [c.id for c in self.claims]
        if len(set(ids)) != len(ids):
            raise PatchbenchError(f"paper {self.name}: claim ids must be unique, got {sorted(i for i in set(ids) if ids.count(i) > 1)}")

    @property
    def folder(self) -> Path:
        return Path(importlib.import_module(self.module).__file__).parent

    def preset_dir(self) -> Path:
        return self.folder / "presets"

    def reference(self, name: str) -> pd.DataFrame:
        """A published table of this paper (``reference/<name>.csv``)."""
        path = self.folder / "reference" / f"{name}.csv"
        if not path.is_file():
            raise PatchbenchError(f"paper {self.name} has no reference table {name!r}")
        import pandas as pd  # reason: pandas takes half a second to import; `patchbench --help` needs none

        return pd.read_csv(path)

    def spread_of(self, scale: str | None) -> str | None:
        """The measured spread sentence of ``scale``: ``spread``'s, else ``measurements.yaml``'s (None: not measured)."""
        if scale in self.spread:
            return self.spread[scale]
        path = self.folder / "measurements.yaml"
        if scale is None or not path.is_file():
            return None
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise PatchbenchError(f"paper {self.name}: {path} is not valid YAML ({exc})") from None
        return (data.get("spread") or {}).get(scale)

    def scale(self, scale: str) -> tuple[str, ...]:
        if scale not in self.presets:
            raise PatchbenchError(f"unknown --preset-scale {scale!r} for {self.name}; use {' or '.join(self.presets)}")
        return self.presets[scale]
