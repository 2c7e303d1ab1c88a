"""docs/ARCHITECTURE.md stays true (issue 34 item 7): its module map names every module of the
package (a paper's own modules aside: its folder is one line) and nothing that is gone."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _listed() -> set[str]:
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    block = doc[doc.index("```\npatchbench/"):]
    block = block[: block.index("\n```", 4)]
    listed, folder = set(), ""
    for line in block.splitlines()[1:]:
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        indent, name = len(m.group(1)), m.group(2)
        if indent == 2:
            folder = name if name.endswith("/") else ""
            listed.add(name)
        elif indent == 4 and folder and name.endswith((".py", "/")):
            listed.add(folder + name)
    return listed


def test_the_module_map_lists_every_module_and_only_existing_ones():
    package = REPO / "patchbench"
    actual = {p.relative_to(package).as_posix() for p in package.rglob("*.py")
              if "papers" not in p.relative_to(package).parts[:-2]}  # a paper's folder is one line
    actual = {a for a in actual if not (a.endswith("/__init__.py") and a not in _listed())}
    listed = {x for x in _listed() if x.endswith(".py")}
    assert not actual - listed, f"modules missing from docs/ARCHITECTURE.md: {sorted(actual - listed)}"
    assert not listed - actual, f"docs/ARCHITECTURE.md lists modules that are gone: {sorted(listed - actual)}"
    folders = {p.relative_to(package).as_posix() + "/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= _listed(), f"wings missing from docs/ARCHITECTURE.md: {sorted(folders - _listed())}"
