"""``patchbench.reporting.report.write_report`` on a toy paper registered for the test (two presets, one with
stored cells, a table with Δ and one without, a figure, an extra markdown table, a CSV next to the
reports): every table and figure present with its id, figures inlined, nothing external, the
deviations, the provenance (or the line saying there is none), presets not run yet, and the error
when no preset has a cell."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from patchbench.claims import Cells, Claim
from patchbench.errors import PatchbenchError
from patchbench.paper import Figure, Paper
from patchbench.papers import PAPERS
from patchbench.reporting.report import write_report
from patchbench.store.results import ResultStore
from patchbench.table import Table

TOY = "toyreport"
PRESET = """name: {name}
paper: toyreport
experiment: evasion
description: a toy preset <of the report test>
tables: {tables}
device: cpu
data: {{dataset: fashion-mnist, image_size: 28, eval_n: 10}}
model: {{arch: lenet}}
trainings: [raw]
evasion:
  - {{name: fgsm, eps: 0.1}}
notes:
  - "Note of {name}: toy scale."
"""
TABLE_IDS = ["table-toy-ran-toy-delta", "table-toy-ran-toy-nodelta", "table-toy-ran-extra", "table-toyreport-runtime"]
FIGURE_IDS = ["fig-toy-ran-curve"]


def _acc(cells, preset) -> float:
    return 100 * cells.loc[cells["preset"] == preset, "accuracy"].mean()


def build_delta(t, cells, ctx):
    acc = _acc(cells, ctx.preset)
    frame = pd.DataFrame({"Defense": ["none"], "Clean ours": [f"{acc:.2f}"], "Clean paper": [50.0],
                          "Clean Δ": [f"{acc - 50:+.2f}"]})
    return frame, f"Toy Table 1: the paper's setting (preset {ctx.preset})"


def build_nodelta(t, cells, ctx):
    frame = pd.DataFrame({"Defense": ["none", "<lgs>"], "Clean ours": [f"{_acc(cells, ctx.preset):.2f}", "1"],
                          "Clean paper": [40.0, None]})
    frame.attrs["warnings"] = ["Warning: the toy attack is weak."]
    return frame, "Toy Table 2: another dataset, so no Δ column"


def draw(cells, preset, out, **params) -> Path:
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (90, 1))
    Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], -1)).save(out)
    return Path(out)


def report(preset, cells, out: Path) -> list[Path]:
    (out / f"{preset.name}-extra.md").write_text("| step | success |\n|---:|---:|\n| 0 | 0.1 |\n| 10 | 0.5 |\n")
    return [draw(cells, preset.name, out / f"{preset.name}-curve.png"), out / f"{preset.name}-extra.md"]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy paper in the registry (undone after the test), its presets in an importable package."""
    pkg = tmp_path / "plugins" / "toyreport_plugin"
    (pkg / "presets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, tables in (("toy-ran", "[toy-delta, toy-nodelta]"), ("toy-empty", "[toy-delta]")):
        (pkg / "presets" / f"{name}.yaml").write_text(PRESET.format(name=name, tables=tables))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    tables = {"toy-delta": Table("toy-delta", TOY, "Toy Table 1", build_delta, ("toy-ran",), "toy-ran"),
              "toy-nodelta": Table("toy-nodelta", TOY, "Toy Table 2", build_nodelta, ("toy-ran",), "toy-ran")}
    claim = Claim("toy-clean", "the clean toy model beats the <empty> one", "Table 1", "75 vs 50 %",
                  Cells("toy-ran, clean", {"preset": "toy-ran"}), Cells("toy-empty, clean", {"condition": "clean"}),
                  {"demo": "toy-empty"})
    paper = Paper(name=TOY, title="Toy 2099: tables and a figure", module="toyreport_plugin",
                  presets={"demo": ("toy-ran", "toy-empty"), "paper": ("toy-empty",)}, tables=tables, claims=(claim,),
                  figures={"curve": Figure("curve", "Fig. 1: a toy curve", draw)}, report=report,
                  deviations=("Toys in the place of the paper's <models>.", "No Δ where the data differ."))
    monkeypatch.setitem(PAPERS, TOY, paper)
    return paper


def store_cells(results: Path) -> None:
    store = ResultStore(results)
    for i, acc in enumerate((0.7, 0.8)):
        row = {"run_id": f"toy{i}", "preset": "toy-ran", "dataset": "fashion-mnist", "model": "lenet", "condition": "clean",
               "defense": "none", "n": 10, "correct": int(10 * acc), "accuracy": acc, "ci_low": acc - 0.2,
               "ci_high": min(acc + 0.1, 1.0), "created": f"2026-01-0{i + 1}T00:00:00+00:00"}
        store.write(row, pd.DataFrame({"index": range(10)}))


@pytest.fixture
def toy_report(toy, tmp_path):
    """(html text, md text, output folder) of the toy paper's demo report, without provenance."""
    results = tmp_path / "results"
    store_cells(results)
    out = results / "demo"
    out.mkdir(parents=True)
    pd.DataFrame({"defense": ["lgs"], "seconds": [0.5]}).to_csv(out / f"{TOY}-runtime.csv", index=False)
    pd.DataFrame({"x": [1]}).to_csv(out / "other-paper.csv", index=False)  # not the toy's: not shown
    html_path, md_path = write_report(results, "demo", papers=[TOY])
    assert (html_path, md_path) == (out / "report.html", out / "REPORT.md")
    return html_path.read_text(), md_path.read_text(), out


class Elements(HTMLParser):
    """Tags with their attributes, in document order."""

    def __init__(self, text: str):
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def ids(self, tag: str) -> list[str]:
        return [a.get("id") for t, a in self.found if t == tag]


def test_every_table_and_figure_is_in_the_page_and_the_page_is_self_contained(toy_report):
    page, _, _ = toy_report
    el = Elements(page)
    assert el.ids("table") == ["claims"] + TABLE_IDS[:2] + TABLE_IDS[3:]  # the extra markdown table is preformatted text
    assert "table-toy-ran-extra" in el.ids("pre")
    assert el.ids("figure") == FIGURE_IDS
    images = [a for t, a in el.found if t == "img"]
    assert len(images) == 1 and images[0]["alt"] == "Fig. 1: a toy curve"
    prefix = "data:image/png;base64,"
    assert images[0]["src"].startswith(prefix)
    assert base64.b64decode(images[0]["src"][len(prefix):])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<figcaption>Fig. 1: a toy curve (toy-ran-curve.png)</figcaption>" in page
    assert "http" not in page and "<script" not in page.lower() and "<link" not in page
    hrefs = [a["href"] for t, a in el.found if t == "a"]
    assert all(h.startswith("#") for h in hrefs)
    for target in TABLE_IDS + FIGURE_IDS + ["paper-toyreport", "preset-toy-ran", "preset-toy-empty"]:
        assert f"#{target}" in hrefs, target  # the contents link every table and figure
    assert "&lt;lgs&gt;" in page and "<lgs>" not in page  # table cells are escaped
    assert "a toy preset &lt;of the report test&gt;" in page


def test_the_page_shows_deviations_notes_delta_and_presets_not_run(toy_report):
    page, md, _ = toy_report
    for text in (page, md):
        assert "Known deviations from the paper" in text
        assert "No Δ where the data differ." in text
        assert "Note of toy-ran: toy scale." in text and "Warning: the toy attack is weak." in text
        assert text.count("Δ (ours − paper) is left out") == 1  # under Toy Table 2 only
        assert text.count("Not run yet") == 1 and "`patchbench reproduce toyreport --preset-scale demo`" in md
        assert "no provenance recorded (run `patchbench reproduce`)" in text
        assert "Note of toy-empty" not in text
    assert "Toys in the place of the paper&#x27;s &lt;models&gt;." in page
    assert "<code>patchbench reproduce toyreport --preset-scale demo</code>" in page
    assert "other-paper" not in page


def test_the_report_opens_with_the_claims_and_their_verdicts(toy_report):
    page, md, _ = toy_report
    assert [i for i in Elements(page).ids("section")][:2] == ["claims-section", "paper-toyreport"]
    assert page.index('id="claims"') < page.index('id="contents"')
    head = md.split("## Contents")[0]
    assert "## Claims: 0 of 1 claims hold" in head and "| toyreport | toy-clean" in head
    for text in (page, md):  # the claim's verdict, why, and the tally under the table
        assert "not computed" in text and "no stored cell of toy-empty; `patchbench reproduce toyreport --preset-scale demo` " \
                                             "computes them" in text
        assert "toyreport: 0 of 1 claims hold (1 not computed)" in text
    assert "the clean toy model beats the &lt;empty&gt; one" in page


def test_the_markdown_links_the_figures_and_holds_the_tables(toy_report):
    _, md, out = toy_report
    assert "![Fig. 1: a toy curve](toy-ran-curve.png)" in md and (out / "toy-ran-curve.png").is_file()
    assert "**Toy Table 1: the paper's setting (preset toy-ran)**" in md
    assert "| none      |        75.00 |          50.0 |    +25.00 |" in md  # numbers as the builder wrote them
    assert "| &lt;lgs>  |            1 |               |" in md and "Toys in the place of the paper's &lt;models>." in md
    assert "| 10 | 0.5 |" in md  # the plugin's markdown table, as it is
    for target in TABLE_IDS + FIGURE_IDS:
        assert f'<a id="{target}"></a>' in md and f"](#{target})" in md


def test_provenance_of_the_latest_run_and_of_the_run_from_empty(toy, tmp_path):
    results = tmp_path / "results"
    store_cells(results)
    runs = [{"started": "2026-12-01T10:00:00+00:00", "wall_s": 812.3, "new_cells": 530, "git_sha": "aaa111",
             "torch": "2.0", "device": "cpu (2 threads)", "cpu": "Old CPU", "scale": "demo", "presets": {"toy-ran": "h-old"}},
            {"started": "2026-12-02T19:00:00+00:00", "wall_s": 20.5, "new_cells": 0, "git_sha": None, "torch": "2.9",
             "device": "cuda:0", "cpu": "New CPU", "scale": "demo", "presets": {"toy-ran": "h-new", "toy-empty": "h-e"}},
            {"started": "2026-12-03T00:00:00+00:00", "wall_s": 9999, "new_cells": 7, "scale": "paper"}]  # another scale
    out = results / "demo"
    out.mkdir(parents=True)
    (out / "provenance.json").write_text(json.dumps({"papers": {TOY: {"runs": runs}}}))
    html_path, md_path = write_report(results, "demo", papers=[TOY])
    page, md = html_path.read_text(), md_path.read_text()
    for text in (page, md):
        assert "no provenance recorded" not in text
        for value in ("2026-12-02T19:00:00+00:00", "20.5 s, 0 new cells", "812 s (13.5 min), 530 new cells",
                      "(run of 2026-12-01T10:00:00+00:00)", "cuda:0", "New CPU", "2.9", "h-new", "h-e"):
            assert value in text, value
        assert "config hash toy-ran" in text and "Old CPU" not in text and "9999" not in text
    assert "- git SHA: `unknown`" in md


def test_every_registered_paper_in_registry_order_and_the_error_without_cells(toy, tmp_path):
    results = tmp_path / "results"
    with pytest.raises(PatchbenchError, match=r"^no stored cells of any demo-scale preset under .*; run "
                                              r"`patchbench reproduce all --preset-scale demo` first$"):
        write_report(results, "demo")
    assert not (results / "demo").exists()
    store_cells(results)
    page = write_report(results, "demo")[0].read_text()
    ids = [i for i in Elements(page).ids("section") if i.startswith("paper-")]
    # the shipped papers with demo presets (not run yet) and the toy; PatchCleanser's demo is ICAART's table
    assert ids == [f"paper-{name}" for name, p in PAPERS.items() if p.scale("demo")]
    assert page.count("Not run yet") == 1 + sum(len(p.scale("demo")) for p in PAPERS.values() if p.name != TOY)
    for paper in (p for p in PAPERS.values() if p.scale("demo")):
        for deviation in paper.deviations[:1]:
            assert deviation.split("(")[0].replace("'", "&#x27;")[:30] in page
    with pytest.raises(PatchbenchError, match="unknown paper 'nope'"):
        write_report(results, "demo", papers=["nope"])


def test_markdown_tables_keep_the_sign_of_a_difference():
    """tabulate parses a column of numbers and drops the '+' of a positive Δ unless told not to."""
    from patchbench.table import render

    text = render(pd.DataFrame({"Δ": ["+1.23", "-2.00"], "ours": ["50.0", "7"]}), "t", "markdown")
    assert "+1.23" in text and "-2.00" in text and "| 7 " in text.replace("  ", " ")


def test_machine_note_names_each_machine_and_the_cells_from_before_it():
    from patchbench.table import machine_note

    one = pd.DataFrame({"cpu": ["AMD EPYC"] * 2, "threads": [2, 2], "torch": ["2.14.1"] * 2, "device": ["cpu"] * 2})
    assert machine_note(one) == "Computed on AMD EPYC, 2 torch threads, torch 2.14.1."
    gpu = pd.DataFrame({"cpu": ["Xeon"], "threads": [16], "torch": ["2.14.1"], "device": ["NVIDIA H200"]})
    old = pd.DataFrame({"device": ["cpu"]})  # a cell written before the machine columns
    note = machine_note(pd.concat([one, gpu, old], ignore_index=True))
    assert "AMD EPYC, 2 torch threads, torch 2.14.1 (2 cells)" in note
    assert "Xeon, 16 torch threads, torch 2.14.1, NVIDIA H200 (1 cell)" in note
    assert "not recorded (1 cell from before" in note
    assert machine_note(old).startswith("Machine not recorded")
    fused = one.assign(compiled=[True, False])  # one cell under `patchbench --compile`
    assert machine_note(fused) == ("Computed on AMD EPYC, 2 torch threads, torch 2.14.1 (1 cell); "
                                   "AMD EPYC, 2 torch threads, torch 2.14.1, defenses compiled (--compile) (1 cell).")


def test_the_leaderboard_closes_the_report_and_is_written_as_json(toy, tmp_path):
    """An attacked cell of a preset of the scale makes a leaderboard: the last section of both pages,
    linked from the contents, and leaderboard.json beside them (patchbench.reporting.leaderboard)."""
    results = tmp_path / "results"
    store_cells(results)
    row = {"run_id": "toy-att", "preset": "toy-ran+patch-optimality", "dataset": "fashion-mnist", "model": "lenet",
           "model_id": "m1", "image_size": 28, "condition": "attacked", "defense": "none", "attack": "lavan", "patch_px": 6,
           "n": 10, "correct": 3, "accuracy": 0.3, "ci_low": 0.1, "ci_high": 0.6, "created": "2026-01-03T00:00:00+00:00"}
    ResultStore(results).write(row, pd.DataFrame({"index": range(10)}))
    html_path, md_path = write_report(results, "demo", papers=[TOY])
    page, md = html_path.read_text(), md_path.read_text()
    assert Elements(page).ids("table")[-1] == "leaderboard" and "#leaderboard" in page
    assert " lavan 6px |" in md.split("## Leaderboard")[1] and "](#leaderboard)" in md
    board = json.loads((html_path.parent / "leaderboard.json").read_text())
    assert [e["robust_accuracy"] for e in board["entries"]] == [0.3]
