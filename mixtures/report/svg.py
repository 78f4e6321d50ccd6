"""Small deterministic SVG charts for the HTML reports, plus the one way Mixlab saves a matplotlib figure as SVG.

The charts are plain strings: no ids, no timestamps, no randomness, coordinates rounded to 0.1 px, so the same
data gives the same bytes. Every text is HTML-escaped (labels may come from documents); every mark carries a
``<title>`` so hovering shows its exact value. Sizes are explicit (``width``/``height`` and a ``viewBox``), so a
browser never draws a chart at zero size.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974",
           "#64B5CD"]
KEPT, REMOVED, QUARANTINED, MUTED, GRID, INK = "#55A868", "#DD8452", "#C44E52", "#c9ced6", "#e6e8ec", "#333"
FONT_PX = 11
CHAR_PX = 7.0  # a generous average width of a character at FONT_PX in a sans-serif font
SVG_HASHSALT = "mixlab"  # matplotlib derives clip-path and glyph ids from this instead of a random uuid


def save_svg(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as SVG with the same bytes every run (fixed id salt, no date) and close it."""
    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT}):
        fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float) -> str:
    """A short human number: 1,234 / 12.3k / 4.56M / 0.123."""
    v = float(value)
    if v != v:  # NaN
        return "n/a"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:.3g}"


def _n(x: float) -> str:
    """A coordinate: rounded to 0.1 px, no trailing zeros."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (``integer``: whole steps only, for counts)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _label_width(labels: Sequence[str], cap: int = 40) -> float:
    return min(max((len(x) for x in labels), default=4), cap) * CHAR_PX + 12


def _clip(label: str, cap: int = 40) -> str:
    return label if len(label) <= cap else label[: cap - 1] + "…"


@dataclass
class Canvas:
    """SVG elements in drawing order."""

    width: float
    height: float
    label: str
    parts: list[str] = field(default_factory=list)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tip: str | None = None,
             opacity: float | None = None) -> None:
        attrs = f'x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0))}" height="{_n(max(h, 0))}" fill="{fill}"'
        if opacity is not None:
            attrs += f' fill-opacity="{opacity:g}"'
        self.parts.append(f"<rect {attrs}>{self._tip(tip)}</rect>" if tip else f"<rect {attrs}/>")

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = GRID, width: float = 1,
             dash: str | None = None, tip: str | None = None) -> None:
        attrs = (f'x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}" '
                 f'stroke-width="{width:g}"' + (f' stroke-dasharray="{dash}"' if dash else ""))
        self.parts.append(f"<line {attrs}>{self._tip(tip)}</line>" if tip else f"<line {attrs}/>")

    def text(self, x: float, y: float, text: str, anchor: str = "start", size: int = FONT_PX, color: str = INK,
             bold: bool = False, tip: str | None = None) -> None:
        weight = ' font-weight="600"' if bold else ""
        self.parts.append(f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" text-anchor="{anchor}" fill="{color}"'
                          f'{weight}>{esc(text)}{self._tip(tip)}</text>')

    def polyline(self, points: Sequence[tuple[float, float]], stroke: str, width: float = 1.5,
                 opacity: float = 1.0, tip: str | None = None, fill: str = "none") -> None:
        pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
        attrs = (f'points="{pts}" fill="{fill}" stroke="{stroke}" stroke-width="{width:g}" '
                 f'stroke-opacity="{opacity:g}" stroke-linejoin="round"')
        self.parts.append(f"<polyline {attrs}>{self._tip(tip)}</polyline>" if tip else f"<polyline {attrs}/>")

    def circle(self, x: float, y: float, r: float, fill: str, tip: str | None = None) -> None:
        attrs = f'cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="{fill}"'
        self.parts.append(f"<circle {attrs}>{self._tip(tip)}</circle>" if tip else f"<circle {attrs}/>")

    @staticmethod
    def _tip(tip: str | None) -> str:
        return f"<title>{esc(tip)}</title>" if tip else ""

    def legend(self, items: Sequence[tuple[str, str]], x: float, y: float) -> None:
        for name, color in items:
            self.rect(x, y - 9, 10, 10, color)
            self.text(x + 14, y, name)
            x += 14 + len(name) * CHAR_PX + 16

    def render(self) -> str:
        w, h = _n(self.width), _n(self.height)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
                f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(self.label)}" '
                f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">'
                f"<title>{esc(self.label)}</title>" + "".join(self.parts) + "</svg>")


@dataclass
class Seg:
    """One segment of a horizontal bar: its value, colour and hover text."""

    value: float
    color: str = PALETTE[0]
    tip: str | None = None


@dataclass
class Row:
    """A labelled row of one or more bars (grouped), each bar a stack of segments."""

    label: str
    bars: list[list[Seg]]
    note: str | None = None  # printed after the longest bar; default: the first bar's total

    @property
    def totals(self) -> list[float]:
        return [sum(s.value for s in bar) for bar in self.bars]


def hbars(rows: Sequence[Row], title: str, unit: str = "", width: int = 640,
          legend: Sequence[tuple[str, str]] = (), marks: Sequence[tuple[float, str]] = (),
          xmax: float | None = None) -> str:
    """Horizontal (stacked, optionally grouped) bars with a value axis; ``marks`` are dashed reference lines."""
    labels = [r.label for r in rows]
    left = _label_width(labels)
    notes = [r.note if r.note is not None else fmt(r.totals[0]) for r in rows]
    right = min(max((len(n) for n in notes), default=4) * CHAR_PX + 10, width / 3)
    bar_h, gap = 14, 8
    per_row = max((len(r.bars) for r in rows), default=1) * bar_h + gap
    top = 24 + (18 if legend else 0) + (14 if marks else 0)
    height = top + max(len(rows), 1) * per_row + 28
    c = Canvas(width, height, title)
    c.text(0, 14, title, bold=True, size=12)
    if legend:
        c.legend(legend, 0, 34)
    top_value = max([*(t for r in rows for t in r.totals), *(m for m, _ in marks), xmax or 0]) or 1.0
    counts = all(float(s.value).is_integer() for r in rows for bar in r.bars for s in bar)
    ticks = nice_ticks(0, top_value, 4, integer=counts)
    span = ticks[-1] or 1.0
    plot_w = width - left - right

    def sx(v: float) -> float:
        return left + plot_w * v / span

    axis_y = top + len(rows) * per_row
    for t in ticks:
        c.line(sx(t), top - 4, sx(t), axis_y)
        c.text(sx(t), axis_y + 14, fmt(t) + (unit if t == ticks[-1] and unit else ""), anchor="middle",
               color="#666")
    for i, row in enumerate(rows):
        y = top + i * per_row
        c.text(left - 6, y + len(row.bars) * bar_h / 2 + 4, _clip(row.label), anchor="end", tip=row.label)
        for j, bar in enumerate(row.bars):
            x = left
            for seg in bar:
                w = plot_w * seg.value / span
                c.rect(x, y + j * bar_h + 1, w, bar_h - 2, seg.color, seg.tip or f"{row.label}: {seg.value:,}")
                x += w
        c.text(sx(max(row.totals)) + 4, y + min(len(row.bars), 1) * bar_h / 2 + 4, notes[i], color="#555")
    for value, name in marks:
        c.line(sx(value), top - 10, sx(value), axis_y, stroke=INK, dash="4 3", tip=f"{name}: {fmt(value)}")
        room = left + plot_w - sx(value) > len(name) * CHAR_PX * 0.9
        c.text(sx(value) + (3 if room else -3), top - 6, name, anchor="start" if room else "end", color="#555",
               size=10)
    c.line(left, top - 4, left, axis_y, stroke="#999")
    return c.render()


@dataclass
class Series:
    """A line (x, y points) or a histogram (counts over shared edges)."""

    name: str
    values: list[float]
    xs: list[float] | None = None
    color: str = PALETTE[0]
    width: float = 1.8
    opacity: float = 1.0
    legend: bool = True


def _axes(c: Canvas, left: float, top: float, plot_w: float, plot_h: float, xticks: list[float],
          yticks: list[float], xlabel: str, ylabel: str, xfmt: Any = fmt, ygrid: bool = True) -> tuple[Any, Any]:
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]

    def sx(v: float) -> float:
        return left + plot_w * (v - x0) / ((x1 - x0) or 1)

    def sy(v: float) -> float:
        return top + plot_h - plot_h * (v - y0) / ((y1 - y0) or 1)

    for t in yticks if ygrid else []:
        c.line(left, sy(t), left + plot_w, sy(t))
        c.text(left - 5, sy(t) + 4, fmt(t), anchor="end", color="#666")
    for t in xticks:
        if not ygrid:
            c.line(sx(t), top, sx(t), top + plot_h)
        c.line(sx(t), top + plot_h, sx(t), top + plot_h + 4, stroke="#999")
        c.text(sx(t), top + plot_h + 16, xfmt(t), anchor="middle", color="#666")
    c.line(left, top + plot_h, left + plot_w, top + plot_h, stroke="#999")
    c.text(left + plot_w / 2, top + plot_h + 32, xlabel, anchor="middle", color="#444")
    c.text(0, top - 8, ylabel, color="#444")
    return sx, sy


def histogram(series: Sequence[Series], edges: Sequence[float], title: str, xlabel: str, ylabel: str = "documents",
              cuts: Sequence[tuple[float, str]] = (), width: int = 420, height: int = 230) -> str:
    """Counts over shared bin ``edges`` as translucent step areas, one per series; ``cuts`` as dashed lines."""
    left, top, right = 44, 60, 12
    c = Canvas(width, height, title)
    c.text(0, 14, title, bold=True, size=12)
    c.legend([(s.name, s.color) for s in series if s.legend], 0, 32)
    plot_w, plot_h = width - left - right, height - top - 40
    ymax = max([v for s in series for v in s.values] + [1])
    xticks = nice_ticks(edges[0], edges[-1], 5)
    xticks = [t for t in xticks if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9] or [edges[0], edges[-1]]
    if xticks[0] > edges[0]:
        xticks.insert(0, edges[0])
    if xticks[-1] < edges[-1]:
        xticks.append(edges[-1])
    sx, sy = _axes(c, left, top, plot_w, plot_h, xticks, nice_ticks(0, ymax, 4), xlabel, ylabel)
    for s in series:
        for i, v in enumerate(s.values):
            if v:
                c.rect(sx(edges[i]), sy(v), sx(edges[i + 1]) - sx(edges[i]), sy(0) - sy(v), s.color,
                       f"{s.name}: {fmt(v)} in [{edges[i]:.3g}, {edges[i + 1]:.3g})", opacity=0.45)
        pts = [(sx(edges[0]), sy(0))]
        for i, v in enumerate(s.values):
            pts += [(sx(edges[i]), sy(v)), (sx(edges[i + 1]), sy(v))]
        pts.append((sx(edges[-1]), sy(0)))
        c.polyline(pts, s.color, width=1.4)
    for k, (value, name) in enumerate(cuts):
        c.line(sx(value), top - 2, sx(value), top + plot_h, stroke=INK, width=1.5, dash="5 3",
               tip=f"{name}: {value:.4g}")
        c.text(sx(value) + (3 if value < (edges[0] + edges[-1]) / 2 else -3), top + 10 + 12 * k,
               f"{name} {value:.3g}", anchor="start" if value < (edges[0] + edges[-1]) / 2 else "end", size=10)
    return c.render()


def lines(series: Sequence[Series], title: str, xlabel: str, ylabel: str, width: int = 640,
          height: int = 300) -> str:
    """Lines through (xs, values); thin translucent ones for per-seed runs, thick ones for means."""
    left, top, right = 52, 52, 16
    c = Canvas(width, height, title)
    c.text(0, 14, title, bold=True, size=12)
    c.legend([(s.name, s.color) for s in series if s.legend], 0, 32)
    plot_w, plot_h = width - left - right, height - top - 40
    xs = [x for s in series for x in (s.xs or [])]
    ys = [y for s in series for y in s.values if y == y]
    if not xs or not ys:
        c.text(left, top + 20, "no data")
        return c.render()
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.05 or abs(yhi) * 0.05 or 1.0
    sx, sy = _axes(c, left, top, plot_w, plot_h, nice_ticks(min(xs), max(xs), 5),
                   nice_ticks(ylo - pad, yhi + pad, 4), xlabel, ylabel)
    for s in series:
        pts = [(sx(x), sy(y)) for x, y in zip(s.xs or [], s.values, strict=True) if y == y]
        if len(pts) == 1:
            c.circle(*pts[0], 3, s.color, tip=s.name)
        elif pts:
            c.polyline(pts, s.color, s.width, s.opacity, tip=f"{s.name}: last {fmt(s.values[-1])}")
    return c.render()


def intervals(rows: Sequence[tuple[str, float, float, float]], title: str, xlabel: str, width: int = 640,
              colors: Sequence[str] | None = None) -> str:
    """One row per item in the given order: the mean as a dot, the interval as a whisker (a ranking chart)."""
    labels = [r[0] for r in rows]
    left, right, top, per_row = _label_width([f"{i}. {x}" for i, x in enumerate(labels, 1)]), 24, 30, 24
    height = top + max(len(rows), 1) * per_row + 40
    c = Canvas(width, height, title)
    c.text(0, 14, title, bold=True, size=12)
    lo = min([r[2] for r in rows] + [r[1] for r in rows] or [0.0])
    hi = max([r[3] for r in rows] + [r[1] for r in rows] or [1.0])
    pad = (hi - lo) * 0.08 or abs(hi) * 0.02 or 1.0
    ticks = nice_ticks(lo - pad, hi + pad, 5)
    plot_w, plot_h = width - left - right, len(rows) * per_row
    sx, _ = _axes(c, left, top, plot_w, plot_h, ticks, [0.0, 1.0], xlabel, "", ygrid=False)
    for i, (label, mean, low, high) in enumerate(rows):
        y = top + i * per_row + per_row / 2
        color = colors[i] if colors else PALETTE[i % len(PALETTE)]
        c.text(left - 8, y + 4, _clip(f"{i + 1}. {label}"), anchor="end", tip=label)
        tip = f"{label}: mean {mean:.4f}, interval [{low:.4f}, {high:.4f}]"
        c.line(sx(low), y, sx(high), y, stroke=color, width=2.5, tip=tip)
        c.line(sx(low), y - 5, sx(low), y + 5, stroke=color, width=2)
        c.line(sx(high), y - 5, sx(high), y + 5, stroke=color, width=2)
        c.circle(sx(mean), y, 4.5, color, tip=tip)
    return c.render()


def heatmap(labels: Sequence[str], values: Sequence[Sequence[float | None]], title: str) -> str:
    """A square matrix of probabilities in [0, 1]: blue above 1/2, red below, the value printed in each cell."""
    cell = 54
    left = _label_width(labels, 24)
    top = 44
    width = max(left + cell * len(labels) + 12, len(title) * CHAR_PX * 1.1)
    height = top + cell * len(labels) + 12
    c = Canvas(width, height, title)
    c.text(0, 14, title, bold=True, size=12)
    for j, name in enumerate(labels):
        c.text(left + j * cell + cell / 2, top - 6, _clip(name, 9), anchor="middle", tip=name)
    for i, row_name in enumerate(labels):
        c.text(left - 6, top + i * cell + cell / 2 + 4, _clip(row_name, 24), anchor="end", tip=row_name)
        for j, v in enumerate(values[i]):
            x, y = left + j * cell, top + i * cell
            if v is None:
                c.rect(x + 1, y + 1, cell - 2, cell - 2, "#f3f4f6")
                continue
            c.rect(x + 1, y + 1, cell - 2, cell - 2, _diverging(v), f"P({row_name} beats {labels[j]}) = {v:.2f}")
            c.text(x + cell / 2, y + cell / 2 + 4, f"{v:.2f}", anchor="middle",
                   color="#fff" if abs(v - 0.5) > 0.3 else INK)
    return c.render()


def _diverging(p: float) -> str:
    """White at 0.5, blue towards 1, red towards 0."""
    t = max(0.0, min(1.0, abs(p - 0.5) * 2))
    target = (44, 95, 160) if p >= 0.5 else (190, 60, 60)
    r, g, b = (round(255 + (k - 255) * t) for k in target)
    return f"#{r:02x}{g:02x}{b:02x}"
