"""The public surface stays small (issue 34 item 5): ``patchbench.api`` exports exactly its
``__all__``, and every name there is one a plugin uses — imported by a shipped paper or named in
docs/EXTENDING.md (the contract a plugin outside the package is written against). A name nobody
outside the engine needs does not belong there."""

import ast
import importlib
import re
from pathlib import Path

import pytest

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
    """Each name of ``__all__`` resolves (its module imported on first use) and nothing else public is there."""
    assert len(api.__all__) == len(set(api.__all__)) and sorted(dir(api)) == sorted(api.__all__)
    for name in api.__all__:
        assert getattr(api, name) is getattr(importlib.import_module(api._SOURCES[name][0]), api._SOURCES[name][1])
    public = {n for n in vars(api) if not n.startswith("_")}
    assert public == set(api.__all__)
    with pytest.raises(ImportError, match="^cannot import name 'Defence' from 'patchbench.api'"):
        from patchbench.api import Defence  # noqa: F401


def test_every_exported_name_is_one_a_plugin_uses():
    documented = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", (REPO / "docs" / "EXTENDING.md").read_text()))
    unused = sorted(set(api.__all__) - _names_papers_import() - documented)
    assert not unused, f"patchbench.api exports {unused}, which no shipped paper imports and EXTENDING.md does not name"


def test_the_shipped_papers_import_only_exported_names():
    assert _names_papers_import() <= set(api.__all__)
