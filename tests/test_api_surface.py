"""The public surface stays small (issue 34 item 5): ``patchbench.api`` exports exactly its
``__all__``, and every name there is one a plugin uses — imported by a shipped paper or named in
docs/EXTENDING.md (the contract a plugin outside the package is written against). A name nobody
outside the engine needs does not belong there."""

import ast
import re
from pathlib import Path

import patchbench.api as api

REPO = Path(__file__).resolve().parents[1]


def _names_papers_import() -> set[str]:
    names = set()
    for path in (REPO / "patchbench" / "papers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "patchbench.api":
                names.update(a.name for a in node.names)
    return names


def test_the_api_exports_exactly_its_all():
    public = {n for n in vars(api) if not n.startswith("_")}
    assert len(api.__all__) == len(set(api.__all__))
    assert public == set(api.__all__)


def test_every_exported_name_is_one_a_plugin_uses():
    documented = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", (REPO / "docs" / "EXTENDING.md").read_text()))
    unused = sorted(set(api.__all__) - _names_papers_import() - documented)
    assert not unused, f"patchbench.api exports {unused}, which no shipped paper imports and EXTENDING.md does not name"


def test_the_shipped_papers_import_only_exported_names():
    assert _names_papers_import() <= set(api.__all__)
