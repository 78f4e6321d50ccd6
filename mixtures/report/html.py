"""Building blocks of Mixlab's HTML reports: one self-contained page (inline CSS and SVG, no script, no network).

Every text goes through :func:`esc` unless it is :class:`Markup` built here; text taken from documents is shown
in ``<pre class="doc">`` blocks, escaped, so a page that contains ``<script>`` shows it instead of running it.
The page carries no timestamp or timing, so a rerun of the same spec writes the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixtures.report.svg import esc

SNIPPET_CHARS = 200

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --bg: #f6f8fa; --accent: #4C72B0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--ink); background: #fff; }
header { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: var(--muted); }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
      padding: 6px 28px; display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: var(--accent); text-decoration: none; font-weight: 500; }
main { padding: 8px 28px 40px; max-width: 1320px; }
section { margin-top: 28px; }
h2 { font-size: 19px; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin: 0 0 10px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
h4 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); }
p.note { color: var(--muted); margin: 4px 0 10px; max-width: 980px; }
.charts { display: flex; flex-wrap: wrap; gap: 18px 28px; align-items: flex-start; margin: 8px 0; }
svg.chart { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; vertical-align: top; text-align: left; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fbfcfd; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg);
       padding: 0 3px; border-radius: 3px; }
td code { word-break: break-all; }
td:first-child code { word-break: normal; white-space: nowrap; }
pre.doc { margin: 0; white-space: pre-wrap; word-break: break-word; min-width: 24em; max-width: 760px;
          max-height: 11.5em; overflow: hidden;
          font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
details { margin: 6px 0 10px; }
details > summary { cursor: pointer; color: var(--accent); font-weight: 500; }
.pill { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; background: var(--bg);
        border: 1px solid var(--line); }
.kept { color: #2e7d32; } .removed { color: #b25a16; }
"""


class Markup(str):
    """HTML built by this module: inserted as is, never escaped again."""


def text(value: Any) -> Markup:
    return Markup(esc(value))


def code(value: Any) -> Markup:
    return Markup(f"<code>{esc(value)}</code>")


def para(value: str, cls: str = "note") -> Markup:
    """A paragraph of plain text (escaped)."""
    return Markup(f'<p class="{cls}">{esc(value)}</p>')


def heading(level: int, value: str, anchor: str | None = None) -> Markup:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return Markup(f"<h{level}{ident}>{esc(value)}</h{level}>")


def snippet(value: str | None, chars: int = SNIPPET_CHARS) -> Markup:
    """The first ``chars`` characters of a document, escaped, whitespace kept."""
    value = value or ""
    cut = value[:chars].rstrip()
    return Markup(f'<pre class="doc">{esc(cut)}{"…" if len(value) > chars else ""}</pre>')


def slug(value: str) -> str:
    """An anchor name: lower case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "section"


def markdown_inline(value: str) -> Markup:
    """Escaped text with Markdown's `code` spans (the only inline Markdown the reports' settings use)."""
    parts = value.split("`")
    return Markup("".join(f"<code>{esc(p)}</code>" if i % 2 else esc(p) for i, p in enumerate(parts)))


def markdown_block(lines: Sequence[str]) -> Markup:
    """The small Markdown the reports write: paragraphs and pipe tables (``|---|`` rows skipped)."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            out.append(table(rows[0], [[markdown_inline(c) for c in r] for r in rows[1:]]))
            rows.clear()

    for line in lines:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
            continue
        flush()
        if line.strip():
            out.append(f'<p class="note">{markdown_inline(line)}</p>')
    flush()
    return Markup("".join(out))


def _cell(value: Any) -> tuple[str, bool]:
    if isinstance(value, Markup):
        return str(value), False
    if isinstance(value, bool) or value is None:
        return esc("-" if value is None else value), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        return (f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"), True
    return esc(value), False


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Markup:
    """A table; ints and floats are right-aligned and formatted, Markup cells are inserted as is."""
    body = []
    numeric: set[int] = set()
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            html, num = _cell(value)
            if num:
                numeric.add(i)
            cells.append(f'<td class="num">{html}</td>' if num else f"<td>{html}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def charts(*svgs: str) -> Markup:
    """Charts side by side, wrapping on narrow screens."""
    return Markup('<div class="charts">' + "".join(svgs) + "</div>")


def details(summary: str, inner: Iterable[str], open_: bool = False) -> Markup:
    return Markup(f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>" + "".join(inner)
                  + "</details>")


@dataclass
class Section:
    """One titled part of the page (also an entry of the navigation bar)."""

    anchor: str
    title: str
    body: Sequence[str]


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole HTML document."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{"".join(s.body)}</section>'
                   for s in sections)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


def write_page(path: Path, document: str) -> Path:
    """Write ``document`` to ``path`` through a temporary file, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
    return path
