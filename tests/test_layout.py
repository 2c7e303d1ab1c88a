"""The house's shape, checked from the source: no import circles, plugins on the public surface only,
modules of one job (small), a CLI that parses and prints."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "patchbench"
PAPERS = PACKAGE / "papers"
MODEL_DEFINITIONS = PACKAGE / "models"  # network definitions may be long; everything else stays small
MAX_LINES = 300
CLI_MAX_LINES = 250


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """Every patchbench module ``name`` imports, at module level or inside a function (a lazy import
    still ties the two modules together), resolved to the module that defines the imported name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # `patchbench.attacks.PGD` -> the package that exports it
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def test_graph_sees_imports():
    """The walker finds what it must (so an empty graph cannot pass the circle test)."""
    assert "patchbench.api" in GRAPH["patchbench.papers.icaart2022"]
    assert "patchbench.presets" in GRAPH["patchbench.reporting"]
    assert "patchbench.papers" in GRAPH["patchbench.presets"]  # a module-level import
    assert "patchbench.run" in GRAPH["patchbench.scaleout"]  # an import inside a function


def test_no_import_circles():
    try:
        order = list(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as exc:
        pytest.fail("import circle: " + " -> ".join(exc.args[1]))
    assert set(order) == set(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("patchbench.papers.")))
def test_paper_plugins_import_only_the_public_surface(name):
    """A plugin module imports ``patchbench.api`` and its own folder, nothing else of patchbench."""
    own = ".".join(name.split(".")[:3])
    others = {m for m in GRAPH[name] if m != "patchbench.api" and m != own and not m.startswith(own + ".")}
    assert not others, f"{name} imports internals {sorted(others)}; add what it needs to patchbench/api.py"


def test_api_does_not_import_the_plugins():
    """The api sits below the plugins: nothing it imports reaches ``patchbench.papers``."""
    seen, todo = set(), ["patchbench.api"]
    while todo:
        for m in GRAPH[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    assert not {m for m in seen if m == "patchbench.papers" or m.startswith("patchbench.papers.")}


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if MODEL_DEFINITIONS not in p.parents),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    limit = CLI_MAX_LINES if path.name == "cli.py" else MAX_LINES
    assert lines <= limit, f"{path.relative_to(PACKAGE)} has {lines} lines (> {limit}): split it by job"


def test_no_private_imports_of_other_packages():
    """Only public APIs of the libraries (``typer._click`` and the like break on upgrades)."""
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for mod in mods:
                private = [p for p in mod.split(".")[1:] if p.startswith("_")]
                assert mod.startswith("patchbench") or not private, f"{name} imports private {mod}"


AUDIT_LOWER_LAYERS = ("patchbench.defenses", "patchbench.attacks", "patchbench.errors", "patchbench.util")


def test_audit_imports_only_the_lower_layers():
    """``patchbench.audit`` reads models, defenses and what attacks record: it stands on the
    defenses, attacks, errors and util only, so whatever runs the audit later (the grid, a report,
    a paper) can import it without a circle. One module that runs an evaluation itself
    (:data:`AUDIT_RUNNERS`) may stand higher."""
    audit = [n for n in MODULES if n == "patchbench.audit" or n.startswith("patchbench.audit.")]
    assert "patchbench.audit.gradients" in audit
    for name in audit:
        allowed = ("patchbench.audit",) + AUDIT_LOWER_LAYERS + AUDIT_RUNNERS.get(name, ())
        bad = {m for m in GRAPH[name] if not any(m == a or m.startswith(a + ".") for a in allowed)}
        assert not bad, f"{name} imports {sorted(bad)}, above the audit's layer"


# The exceptions, kept to two modules: the AutoAttack cross-check and the per-cell audit of a preset
# *run* an evaluation (its stored cells, its cached models, its evaluation images, the table renderer,
# the preset loader for a `python -m` entry point), so they stand on the store, the model cache, the
# data and the presets. Each stays a leaf: nothing else in patchbench.audit imports it (next test), so
# the rest of the package can still be imported from below (by the grid, a report) without a circle.
AUDIT_RUNNERS = {
    "patchbench.audit.autoattack": ("patchbench.cache", "patchbench.config", "patchbench.data", "patchbench.devices",
                                    "patchbench.papers", "patchbench.presets", "patchbench.results", "patchbench.tables"),
    "patchbench.audit.runner": ("patchbench.cache", "patchbench.config", "patchbench.data", "patchbench.results"),
}


def test_audit_runners_are_leaves_of_the_audit_package():
    for runner in AUDIT_RUNNERS:
        assert runner in MODULES
        importers = {n for n, deps in GRAPH.items() if runner in deps and n.startswith("patchbench.audit")}
        assert not importers, f"{sorted(importers)} import {runner}: only the CLI (above) may"
