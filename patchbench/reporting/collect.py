"""What ``patchbench report`` shows, gathered once: per paper of the registry and per preset of the
scale, the tables the preset names (built from the stored cells), the figures and extra tables the
plugin's ``report`` (re)draws into the output folder, the ``<paper>-*.csv`` files found there, the
plugin's known deviations and the provenance ``reproduce`` recorded. The renderers
(:mod:`.html`, :mod:`.markdown`) only format this."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from patchbench.reporting.claim_checks import check_claims
from patchbench.claims.render import RULE, tallies, verdict_frame
from patchbench.claims.rules import tally
from patchbench.errors import PatchbenchError
from patchbench.papers import PAPERS, get_paper
from patchbench.presets import load_preset
from patchbench.reporting.leaderboard import MAX_AREA_PCT, entries, frame
from patchbench.reporting.provenance import header, paper_provenance
from patchbench.reporting.lookup import all_tables, build_table
from patchbench.store.results import ResultStore, one_precision
from patchbench.table import table_notes

NO_DELTA = "Δ (ours − paper) is left out: dataset or model differ from the paper's (the caption says which)."


@dataclass
class TableItem:
    """A table: a DataFrame (``frame``) or, for a markdown file a plugin wrote, its text."""

    id: str
    title: str  # short, for the contents
    caption: str
    frame: pd.DataFrame | None = None
    text: str = ""
    notes: list[str] = field(default_factory=list)  # the preset's notes, then the table's warnings
    delta_note: str = ""  # set when a table compared with the paper has no Δ
    left: tuple[str, ...] = ()  # text columns the markdown aligns left (the first column always is)


@dataclass
class FigureItem:
    id: str
    title: str
    path: Path


@dataclass
class PresetSection:
    name: str
    id: str
    description: str
    ran: bool
    command: str  # what computes its cells
    tables: list[TableItem] = field(default_factory=list)
    figures: list[FigureItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # tables or figures that could not be built


@dataclass
class PaperSection:
    name: str
    id: str
    title: str
    deviations: tuple[str, ...]
    provenance: list[tuple[str, str]]  # (label, value); empty: no_provenance says why
    no_provenance: str
    presets: list[PresetSection] = field(default_factory=list)
    extra: list[TableItem] = field(default_factory=list)  # <paper>-*.csv in the output folder
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    scale: str
    out: Path
    header: list[tuple[str, str]]
    papers: list[PaperSection]
    leaderboard: TableItem | None = None  # every model × defense of the scale's presets, strongest attack
    board: list[dict] = field(default_factory=list)  # its JSON entries (leaderboard.json)
    claims: TableItem | None = None  # the opening table: every paper's claims and their verdicts at this scale


class _Ids:
    """HTML ids from names: letters, digits, ``-`` and ``_`` only, each used once."""

    def __init__(self):
        self.taken: set[str] = set()

    def __call__(self, prefix: str, name: str) -> str:
        base = f"{prefix}-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")
        new, i = base, 1
        while new in self.taken:
            i += 1
            new = f"{base}-{i}"
        self.taken.add(new)
        return new


def has_delta(frame: pd.DataFrame) -> bool:
    """A Δ column (``... Δ``) or a Δ row (a cell holding just ``Δ``)."""
    return any("Δ" in str(c) for c in frame.columns) or bool((frame.astype(str) == "Δ").to_numpy().any())


def figure_title(paper, preset: str, path: Path) -> str:
    """The title of the plugin's figure a file belongs to (``<preset>-<figure name>.png``, the figure
    name with or without the paper's prefix), else the file's name."""
    for fig in paper.figures.values():
        if path.stem in (f"{preset}-{fig.name}", f"{preset}-{fig.name.removeprefix(paper.name + '-')}"):
            return fig.title
    return path.stem


def _preset_section(paper, name: str, scale: str, cells: pd.DataFrame, out: Path, ids: _Ids) -> PresetSection:
    preset = load_preset(name)
    sec = PresetSection(name, ids("preset", name), preset.description, ran=bool((cells["preset"] == name).any()),
                        command=f"patchbench reproduce {paper.name} --preset-scale {scale}")
    if not sec.ran:
        return sec
    for table in preset.tables:
        try:
            frame, caption = build_table(table, cells, name)
        except PatchbenchError as exc:
            sec.problems.append(f"table {table}: {exc}")
            continue
        sec.tables.append(TableItem(ids("table", f"{name}-{table}"), f"{table}: {all_tables()[table].title}", caption, frame,
                                    notes=table_notes(frame, preset.notes),
                                    delta_note="" if has_delta(frame) else NO_DELTA))
    try:
        paths = [Path(p) for p in paper.report(preset, cells, out)]
    except PatchbenchError as exc:
        sec.problems.append(f"figures: {exc}")
        paths = []
    for path in paths:
        if path.suffix.lower() == ".png":
            sec.figures.append(FigureItem(ids("fig", path.stem), figure_title(paper, name, path), path))
        elif path.suffix.lower() == ".md":
            sec.tables.append(TableItem(ids("table", path.stem), path.name, f"{path.name}: written by the {paper.name} "
                                        f"plugin for preset {name}", text=path.read_text().strip()))
    return sec


def _csv_tables(paper, out: Path, ids: _Ids) -> tuple[list[TableItem], list[str]]:
    items, problems = [], []
    for path in sorted(out.glob(f"{paper.name}-*.csv")):
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            problems.append(f"{path.name}: not a readable CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
            continue
        items.append(TableItem(ids("table", path.stem), path.name, f"{path.name} (found in {out.name}/)", frame))
    return items, problems


def collect(results: Path, scale: str, out: Path, papers: list[str] | None = None) -> Report:
    """Everything the report shows (figures are redrawn into ``out``). A one-line PatchbenchError
    when none of the chosen papers has a stored cell at this scale."""
    chosen = [get_paper(p) for p in papers] if papers is not None else list(PAPERS.values())
    names = {paper.name: paper.scale(scale) for paper in chosen}  # an unknown scale fails here, first
    cells = one_precision(ResultStore(results, read_only=True).load_cells())
    have = set(cells["preset"].dropna()) if len(cells) else set()
    if not any(n in have for presets in names.values() for n in presets):
        raise PatchbenchError(f"no stored cells of any {scale}-scale preset under {Path(results) / 'cells'}; "
                              f"run `patchbench reproduce all --preset-scale {scale}` first")
    out.mkdir(parents=True, exist_ok=True)
    ids, sections = _Ids(), []
    for paper in [p for p in chosen if names[p.name]]:  # a paper without presets at this scale has nothing to show
        provenance, why = paper_provenance(out, paper.name, scale)
        sec = PaperSection(paper.name, ids("paper", paper.name), paper.title, tuple(paper.deviations), provenance, why)
        sec.presets = [_preset_section(paper, name, scale, cells, out, ids) for name in names[paper.name]]
        sec.extra, sec.problems = _csv_tables(paper, out, ids)
        sections.append(sec)
    scale_presets = {n for presets in names.values() for n in presets}
    board = entries(cells[cells["preset"].fillna("").str.split("+").str[0].isin(scale_presets)])
    return Report(scale, out, header(results, scale), sections, _leaderboard(board), board,
                  claims_table(results, scale, papers))


def _leaderboard(board: list[dict]) -> TableItem | None:
    if not board:
        return None
    caption = (f"Leaderboard: per dataset × model × defense, robust accuracy (%) under the strongest attack found (the lowest "
               f"accuracy of any stored attacked cell, adaptive attacks and their snapshots included; patches up to "
               f"{MAX_AREA_PCT:g} % of the image, the largest tried in brackets) [Wilson 95 %], clean and certified accuracy (%), the strongest cell's "
               "audit flags (flagged / audited attacked cells of the row), provenance")
    return TableItem("leaderboard", "Leaderboard", caption, frame(board), notes=[
        "The same board as JSON entries: leaderboard.json beside this report; `patchbench leaderboard --format json` "
        "writes one per machine and `--merge` joins them (key: images, model weights, training, defense and λ, "
        "precision, threat model; the lowest robust accuracy wins)."])


def claims_table(results: Path, scale: str, papers: list[str] | None) -> TableItem:
    """Every chosen paper's claims with their verdicts at ``scale`` (:mod:`patchbench.claims`), the tally per
    paper and the rules under it."""
    verdicts = check_claims(results, scale, papers)
    return TableItem("claims", f"Claims: {tally(verdicts)}", f"Do the papers' results reproduce? Every declared claim at "
                     f"{scale} scale: {tally(verdicts)}", verdict_frame(verdicts).drop(columns=["Test"]),
                     notes=tallies(verdicts) + [RULE, "`patchbench claims --preset-scale " + scale + " --format json` gives "
                                                "every number (counts, one-sided p-values, cells)."],
                     left=("Claim", "Source", "Statement", "Paper's numbers", "Preset", "Verdict", "Why"))
