"""Code holds code (issue 34 item 6): measurements and their dated stories live in data — a paper's
``measurements.yaml``, its presets' notes, docs/ and results/README.md — not in the modules."""

import re
from pathlib import Path

import yaml

from patchbench.papers import PAPERS
from patchbench.table import spread_note

PACKAGE = Path(__file__).resolve().parents[1] / "patchbench"
STORY = re.compile(r"\bissue \d+|\b\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* 20\d\d\b")


def test_no_module_tells_a_dated_story_or_points_at_an_issue():
    found = [f"{path.relative_to(PACKAGE)}:{i}: {line.strip()[:80]}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for i, line in enumerate(path.read_text().splitlines(), 1) if STORY.search(line)]
    assert not found, "move these into data (measurements.yaml, preset notes, docs/):\n" + "\n".join(found)


def test_a_papers_measured_spread_is_read_from_its_measurements_file():
    with_file = [p for p in PAPERS.values() if (p.folder / "measurements.yaml").is_file()]
    assert {p.name for p in with_file} >= {"icaart2022", "tomm2022", "advml2019", "bmvc2023"}
    for paper in with_file:
        spread = yaml.safe_load((paper.folder / "measurements.yaml").read_text())["spread"]
        for scale, sentence in spread.items():
            assert paper.spread_of(scale) == sentence
            assert spread_note(paper, paper.presets[scale][0]) == sentence
    assert PAPERS["icaart2022"].spread_of(None) is None
