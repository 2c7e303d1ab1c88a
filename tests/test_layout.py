"""The house's shape, checked from the source: no import circles, plugins on the public surface only,
modules of one job (small), a CLI that parses and prints."""

from __future__ import annotations

import ast
import functools
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "patchbench"
PAPERS = PACKAGE / "papers"
MODEL_DEFINITIONS = PACKAGE / "models"  # network definitions may be long; everything else stays small
MAX_LINES = 300
CLI_MAX_LINES = 250  # a command module parses, calls and prints: shorter still
CLI = PACKAGE / "cli"
MAX_ROOT_MODULES = 12

# every test here on one xdist worker: the module graph is parsed once per session, not once per worker
pytestmark = pytest.mark.xdist_group("layout")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def syntax_tree(path: Path) -> ast.Module:
    """A module's syntax tree, parsed once per test process."""
    return ast.parse(path.read_text(), str(path))


@functools.cache
def import_statements(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module with whether it sits inside a function (at any depth), in one walk of
    its tree: the graph and the tests below read every module's imports."""
    found, stack = [], [(syntax_tree(path), False)]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, in_function))
        in_function = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        stack.extend((child, in_function) for child in ast.iter_child_nodes(node))
    return found


def imported_modules(name: str) -> set[str]:
    """Every patchbench module ``name`` imports, at module level or inside a function (a lazy import
    still ties the two modules together), resolved to the module that defines the imported name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node, _ in import_statements(path):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            while t and t not in MODULES:  # `patchbench.attacks.PGD` -> the package that exports it
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    """Module -> the patchbench modules it imports (built on first use: collecting the tests parses nothing)."""
    return {name: imported_modules(name) for name in MODULES}


def test_graph_sees_imports():
    """The walker finds what it must (so an empty graph cannot pass the circle test)."""
    assert "patchbench.api" in graph()["patchbench.papers.icaart2022"]
    assert "patchbench.presets" in graph()["patchbench.reporting.lookup"]
    assert "patchbench.papers" in graph()["patchbench.presets"]  # a module-level import
    assert "patchbench.runner.sweep" in graph()["patchbench.runner.scaleout"]  # an import inside a function


def test_no_import_circles():
    try:
        order = list(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail("import circle: " + " -> ".join(exc.args[1]))
    assert set(order) == set(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("patchbench.papers.")))
def test_paper_plugins_import_only_the_public_surface(name):
    """A plugin module imports ``patchbench.api`` and its own folder, nothing else of patchbench."""
    own = ".".join(name.split(".")[:3])
    others = {m for m in graph()[name] if m != "patchbench.api" and m != own and not m.startswith(own + ".")}
    assert not others, f"{name} imports internals {sorted(others)}; add what it needs to patchbench/api.py"


def test_api_does_not_import_the_plugins():
    """The api sits below the plugins: nothing it imports reaches ``patchbench.papers``."""
    seen, todo = set(), ["patchbench.api"]
    while todo:
        for m in graph()[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    assert not {m for m in seen if m == "patchbench.papers" or m.startswith("patchbench.papers.")}


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if MODEL_DEFINITIONS not in p.parents),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    limit = CLI_MAX_LINES if CLI in path.parents else MAX_LINES
    assert lines <= limit, f"{path.relative_to(PACKAGE)} has {lines} lines (> {limit}): split it by job"


def test_no_private_imports_of_other_packages():
    """Only public APIs of the libraries (``typer._click`` and the like break on upgrades)."""
    for name, path in MODULES.items():
        for node, _ in import_statements(path):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if not node.level else []
            for mod in mods:
                private = [p for p in mod.split(".")[1:] if p.startswith("_")]
                assert mod.startswith("patchbench") or not private, f"{name} imports private {mod}"


AUDIT_LOWER_LAYERS = ("patchbench.defenses", "patchbench.attacks", "patchbench.errors", "patchbench.util")


def test_audit_imports_only_the_lower_layers():
    """``patchbench.audit`` reads models, defenses and what attacks record: it stands on the
    defenses, attacks, errors and util only, so whatever runs the audit (the preset's ``audit:`` section,
    :mod:`patchbench.sections.audit`; the AutoAttack cross-check, :mod:`patchbench.runner.autoattack`), the
    tables and the leaderboard can import it from above."""
    audit = [n for n in MODULES if n == "patchbench.audit" or n.startswith("patchbench.audit.")]
    assert "patchbench.audit.gradients" in audit
    for name in audit:
        allowed = ("patchbench.audit",) + AUDIT_LOWER_LAYERS
        bad = {m for m in graph()[name] if not any(m == a or m.startswith(a + ".") for a in allowed)}
        assert not bad, f"{name} imports {sorted(bad)}, above the audit's layer"


def place(module: str) -> str:
    """A module's place in the house: the wing (subfolder of the package) it stands in, or the module itself at
    the package root: ``patchbench.audit.comparisons`` -> ``audit/``, ``patchbench.presets`` -> ``presets.py``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "patchbench"
    return parts[1] + "/" if (PACKAGE / parts[1]).is_dir() else parts[1] + ".py"


@functools.cache
def places() -> dict[str, set[str]]:
    """Place -> the places its modules import (the folder graph of :func:`graph`)."""
    found: dict[str, set[str]] = {}
    for name, deps in graph().items():
        found.setdefault(place(name), set()).update(place(d) for d in deps if place(d) != place(name))
    return found


def test_places_see_imports():
    """The folder graph keeps what the module graph has, function-local imports included."""
    assert "papers/" in places()["presets.py"] and "api.py" in places()["papers/"]
    assert "runner/" in places()["cli/"]  # the commands import their jobs inside the functions


def test_no_loops_between_folders():
    """No two wings import each other, directly or around a loop, counting imports inside functions (a
    lazy import still ties two folders together): data flows one way through the house."""
    try:
        order = list(graphlib.TopologicalSorter(places()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail("folder-level loop: " + " -> ".join(exc.args[1]))
    assert "cli/" in order and "evaluation/" in order


def test_the_root_holds_few_modules():
    """The package root keeps the contracts and the helpers every wing uses; the rest stands in its wing."""
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package root (> {MAX_ROOT_MODULES}): {root}"


def test_local_imports_say_why():
    """An import inside a function hides an edge of the graph from a reader: it stays only to defer a heavy
    or optional dependency (torch before ``--help``, torchvision, matplotlib, torchattacks), with its reason
    on its line (``# reason: ...``)."""
    silent = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        silent += [f"{name}:{n.lineno}: {lines[n.lineno - 1].strip()}" for n, in_function in import_statements(path)
                   if in_function and "# reason: " not in lines[n.end_lineno - 1]]
    assert not silent, "function-local imports without a reason:\n" + "\n".join(sorted(set(silent)))


# Names that repeat because their modules play one role in sibling wings.
SAME_ROLE = {
    "base.py": "the contract of a registry's entries (attacks/, defenses/)",
    "registry.py": "a wing's registry (data/, models/) and the Registry class registries are made of (root)",
    "checks.py": "a wing's range checks of its preset section (training/, models/)",
}


def test_a_module_name_says_one_thing():
    """No two modules share a name unless they play one role: in sibling wings (:data:`SAME_ROLE`) or in
    sibling paper plugins (``papers/*/tables.py``); a plugin's module never takes a generic module's name."""
    generic, plugin = {}, {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE)
        if p.name == "__init__.py":
            continue
        (plugin if rel.parts[0] == "papers" and len(rel.parts) > 2 else generic).setdefault(p.name, []).append(str(rel))
    repeated = {n: ps for n, ps in generic.items() if len(ps) > 1 and n not in SAME_ROLE}
    assert not repeated, f"modules sharing a name: {repeated}"
    taken = {n: plugin[n] + generic[n] for n in plugin if n in generic}
    assert not taken, f"plugin modules named like generic ones: {taken}"


ENGINE_MAX_FUNCTION_LINES = 60  # the engine is read as named parts: plan, context, accumulator, pass


@pytest.mark.parametrize("module", ["patchbench.evaluation.engine", "patchbench.evaluation.accumulator"])
def test_engine_functions_stay_short(module):
    long = [f"{fn.name}: {fn.end_lineno - fn.lineno + 1} lines" for fn in ast.walk(syntax_tree(MODULES[module]))
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.end_lineno - fn.lineno + 1 > ENGINE_MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {ENGINE_MAX_FUNCTION_LINES} lines: {long}"
