"""The report as one self-contained HTML page: inline ``<style>``, no script, no external reference;
figures inlined as ``data:image/png;base64`` URIs; every text escaped. Readable without JavaScript
and offline."""

from __future__ import annotations

import base64
from html import escape

from patchbench.reporting.collect import FigureItem, PaperSection, PresetSection, Report, TableItem

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b; background: #fff;
       max-width: 1280px; margin: 0 auto; padding: 1.5em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 2.2em; } h3 { margin-top: 1.6em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
nav ul { margin: .2em 0; } .block { margin: 1.2em 0 2em; }
.caption { font-weight: 600; margin-bottom: .4em; }
.scroll { overflow-x: auto; }
table.data { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border: 1px solid #ccc; padding: .2em .5em; text-align: right; white-space: nowrap; }
table.data th { background: #f0f0f0; } table.data tr:nth-child(even) td { background: #fafafa; }
table.data td:first-child, table.data th:first-child { text-align: left; }
table#claims td { white-space: normal; text-align: left; vertical-align: top; }
table#claims td:nth-child(4), table#claims td:nth-child(5), table#claims td:last-child { min-width: 16em; }
table#claims td:nth-child(7), table#claims td:nth-child(8) { white-space: nowrap; }
ol.notes { font-size: 13px; color: #444; } .delta { font-size: 13px; font-style: italic; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
figure { margin: 1.2em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #333; margin-top: .3em; }
.notrun, .problem { background: #fff5e0; border-left: 4px solid #e0a000; padding: .4em .8em; }
"""


def _meta(rows: list[tuple[str, str]]) -> str:
    return '<dl class="meta">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


def _table(t: TableItem) -> str:
    parts = [f'<div class="block"><p class="caption">{escape(t.caption)}</p>']
    if t.frame is not None:
        body = t.frame.to_html(escape=True, index=False, na_rep="", border=0, table_id=t.id, classes="data")
        parts.append(f'<div class="scroll">{body}</div>')
    else:
        parts.append(f'<pre id="{t.id}">{escape(t.text)}</pre>')
    if t.delta_note:
        parts.append(f'<p class="delta">{escape(t.delta_note)}</p>')
    if t.notes:
        parts.append('<ol class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in t.notes) + "</ol>")
    return "".join(parts) + "</div>"


def _figure(f: FigureItem) -> str:
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    return (f'<figure id="{f.id}"><img alt="{escape(f.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(f.title)} ({escape(f.path.name)})</figcaption></figure>")


def _problems(problems: list[str]) -> str:
    return "".join(f'<p class="problem">Not built: {escape(p)}</p>' for p in problems)


def _preset(p: PresetSection) -> str:
    head = f'<section id="{p.id}"><h3>Preset {escape(p.name)}</h3><p>{escape(p.description)}</p>'
    if not p.ran:
        return head + (f'<p class="notrun">Not run yet: no stored cells of this preset; '
                       f"<code>{escape(p.command)}</code> computes them.</p></section>")
    return head + "".join(map(_table, p.tables)) + "".join(map(_figure, p.figures)) + _problems(p.problems) + "</section>"


def _paper(s: PaperSection) -> str:
    parts = [f'<section id="{s.id}"><h2>{escape(s.title)}</h2>', "<h3>Known deviations from the paper</h3>"]
    parts.append("<ul>" + "".join(f"<li>{escape(d)}</li>" for d in s.deviations) + "</ul>" if s.deviations
                 else "<p>None listed by the plugin.</p>")
    parts += [_preset(p) for p in s.presets]
    if s.extra or s.problems:
        parts.append("<h3>Other tables</h3>" + "".join(map(_table, s.extra)) + _problems(s.problems))
    parts.append("<h3>Provenance</h3>" + (_meta(s.provenance) if s.provenance else f"<p>{escape(s.no_provenance)}</p>"))
    return "".join(parts) + "</section>"


def _link(target: str, text: str) -> str:
    return f'<a href="#{target}">{escape(text)}</a>'


def _claims(report: Report) -> str:
    if report.claims is None:
        return ""
    return f'<section id="claims-section"><h2>{escape(report.claims.title)}</h2>{_table(report.claims)}</section>'


def _contents(report: Report) -> str:
    items = [f"<li>{_link('claims-section', report.claims.title)}</li>"] if report.claims is not None else []
    for s in report.papers:
        sub = []
        for p in s.presets:
            inner = [_link(t.id, t.title) for t in p.tables]
            inner += [_link(f.id, f.title.split(":")[0] + f" ({f.path.name})") for f in p.figures]
            label = _link(p.id, f"Preset {p.name}") + ("" if p.ran else " — not run yet")
            sub.append(f"<li>{label}" + ("<ul>" + "".join(f"<li>{i}</li>" for i in inner) + "</ul>" if inner else "") + "</li>")
        sub += [f"<li>{_link(t.id, t.title)}</li>" for t in s.extra]
        items.append(f"<li>{_link(s.id, s.title)}<ul>{''.join(sub)}</ul></li>")
    if report.leaderboard is not None:
        items.append(f"<li>{_link(report.leaderboard.id, report.leaderboard.title)}</li>")
    return '<nav id="contents"><h2>Contents</h2><ul>' + "".join(items) + "</ul></nav>"


def render_html(report: Report) -> str:
    title = f"patchbench report — {report.scale} scale"
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>"
            f"<header><h1>{escape(title)}</h1>{_meta(report.header)}</header>"
            + _claims(report) + _contents(report) + "".join(map(_paper, report.papers))
            + ("" if report.leaderboard is None else f"<section><h2>Leaderboard</h2>{_table(report.leaderboard)}</section>")
            + "</body></html>\n")
