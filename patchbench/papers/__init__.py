"""Paper registry: name -> :class:`~patchbench.paper.Paper`. A shipped paper is one folder under
``patchbench/papers/`` plus one line here; a paper outside the package is a plugin, registered
when this registry is built (:mod:`patchbench.plugins`, docs/EXTENDING.md)."""

from __future__ import annotations

from patchbench.errors import PatchbenchError
from patchbench.experiments import EXPERIMENTS, Experiment
from patchbench.papers import advml2019, bmvc2023, icaart2022, tomm2022
from patchbench.paper import Figure, Paper  # noqa: F401
from patchbench.plugins import load_plugins

PAPERS: dict[str, Paper] = {
    icaart2022.PAPER.name: icaart2022.PAPER,
    tomm2022.PAPER.name: tomm2022.PAPER,
    bmvc2023.PAPER.name: bmvc2023.PAPER,
    advml2019.PAPER.name: advml2019.PAPER,
}
PLUGINS: list[str] = load_plugins(PAPERS)  # $PATCHBENCH_PLUGINS and the patchbench.plugins entry points


def get_paper(name: str) -> Paper:
    if name not in PAPERS:
        raise PatchbenchError(f"unknown paper {name!r}; known: {', '.join(PAPERS)}")
    return PAPERS[name]


def all_experiments() -> dict[str, Experiment]:
    """The generic experiments plus those the paper plugins bring (:attr:`Paper.experiments`)."""
    return {**EXPERIMENTS, **{k: v for paper in PAPERS.values() for k, v in paper.experiments.items()}}
