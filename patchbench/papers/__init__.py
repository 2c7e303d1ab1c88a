"""Paper registry: name -> :class:`~patchbench.paper.Paper`. A shipped paper is one folder under
``patchbench/papers/`` plus one line here; a paper outside the package is a plugin, registered
when this registry is built (:mod:`patchbench.plugins`, docs/EXTENDING.md)."""

from __future__ import annotations

from patchbench.evaluation.experiments import GENERIC, Experiment  # noqa: F401
from patchbench.papers import advml2019, bmvc2023, icaart2022, imagenet_patch2023, patchcleanser2022, tomm2022
from patchbench.paper import Figure, Paper  # noqa: F401
from patchbench.plugins import load_plugins
from patchbench.registry import Registry

PAPERS: Registry = Registry("paper").register_all([icaart2022.PAPER, tomm2022.PAPER, bmvc2023.PAPER, advml2019.PAPER,
                                                patchcleanser2022.PAPER, imagenet_patch2023.PAPER])
PLUGINS: list[str] = load_plugins(PAPERS)  # $PATCHBENCH_PLUGINS and the patchbench.plugins entry points


get_paper = PAPERS.lookup


def all_experiments() -> Registry:
    """The generic experiments plus those the papers bring (:attr:`Paper.experiments`); an experiment
    name taken twice is refused."""
    return Registry("experiment").register_all([*GENERIC, *(e for paper in PAPERS.values() for e in paper.experiments.values())])
