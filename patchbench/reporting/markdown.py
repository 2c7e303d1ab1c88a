"""The report as markdown (``REPORT.md``): the same content as the HTML page, figures as relative
image links to the PNGs next to it, anchors (``<a id>``) with the HTML page's ids."""

from __future__ import annotations

import os

from patchbench.reporting.collect import FigureItem, PaperSection, PresetSection, Report, TableItem


def _anchor(target: str) -> str:
    return f'<a id="{target}"></a>'


def _text(text: str) -> str:
    """Prose as markdown shows it: a ``<`` would open an HTML tag."""
    return text.replace("<", "&lt;")


def _grid(frame, left=()) -> str:
    """The table as it is: no cell re-parsed as a number (``+1.20`` keeps its sign and digits), blanks
    for missing values, ``<`` and ``|`` escaped; the first column and those in ``left`` left-aligned, the
    others right-aligned."""
    cells = frame.astype(object).where(frame.notna(), "").map(lambda v: _text(str(v)).replace("|", "\\|"))
    align = tuple("left" if i == 0 or c in left else "right" for i, c in enumerate(frame.columns))
    return cells.to_markdown(index=False, disable_numparse=True, colalign=align[: len(frame.columns)])


def _table(t: TableItem) -> str:
    body = _grid(t.frame, t.left) if t.frame is not None else t.text
    parts = [_anchor(t.id), f"**{_text(t.caption)}**", body]
    if t.delta_note:
        parts.append(f"_{t.delta_note}_")
    parts += [f"{i}. _{_text(n)}_" for i, n in enumerate(t.notes, 1)]
    return "\n\n".join(parts)


def _figure(f: FigureItem, out) -> str:
    return f"{_anchor(f.id)}\n\n![{f.title}]({os.path.relpath(f.path, out)})\n\n_{f.title} ({f.path.name})_"


def _preset(p: PresetSection, out) -> str:
    parts = [f"### Preset {p.name} {_anchor(p.id)}", _text(p.description)]
    if not p.ran:
        return "\n\n".join(parts + [f"> Not run yet: no stored cells of this preset; `{p.command}` computes them."])
    parts += [_table(t) for t in p.tables] + [_figure(f, out) for f in p.figures]
    parts += [f"> Not built: {_text(m)}" for m in p.problems]
    return "\n\n".join(parts)


def _paper(s: PaperSection, out) -> str:
    parts = [f"## {_text(s.title)} {_anchor(s.id)}", "### Known deviations from the paper",
             "\n".join(f"- {_text(d)}" for d in s.deviations) or "None listed by the plugin."]
    parts += [_preset(p, out) for p in s.presets]
    if s.extra or s.problems:
        parts += ["### Other tables"] + [_table(t) for t in s.extra] + [f"> Not built: {_text(m)}" for m in s.problems]
    parts += ["### Provenance", "\n".join(f"- {k}: `{v}`" for k, v in s.provenance) or s.no_provenance]
    return "\n\n".join(parts)


def _contents(report: Report) -> str:
    lines = [f"- [{_text(report.claims.title)}](#claims-section)"] if report.claims is not None else []
    for s in report.papers:
        lines.append(f"- [{s.title}](#{s.id})")
        for p in s.presets:
            lines.append(f"  - [Preset {p.name}](#{p.id})" + ("" if p.ran else " — not run yet"))
            lines += [f"    - [{t.title}](#{t.id})" for t in p.tables]
            lines += [f"    - [{f.title.split(':')[0]} ({f.path.name})](#{f.id})" for f in p.figures]
        lines += [f"  - [{t.title}](#{t.id})" for t in s.extra]
    if report.leaderboard is not None:
        lines.append(f"- [{report.leaderboard.title}](#{report.leaderboard.id})")
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    head = [f"# patchbench report — {report.scale} scale", "\n".join(f"- {k}: `{v}`" for k, v in report.header)]
    if report.claims is not None:
        head += [f"## {_text(report.claims.title)} {_anchor('claims-section')}", _table(report.claims)]
    head += ["## Contents", _contents(report)]
    board = [] if report.leaderboard is None else ["## Leaderboard", _table(report.leaderboard)]
    return "\n\n".join(head + [_paper(s, report.out) for s in report.papers] + board) + "\n"
