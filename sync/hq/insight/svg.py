"""Inline SVG charts drawn to be read at a glance on a screen: gridlines with
round values, the figure written on each bar, names on horizontal bars, a zero
line where figures can be negative.

The reports pages (``sync.hq.insight.page``) and the campaign charts
(``sync.hq.insight.campaign_charts``) draw with these. Every text put into the SVG
goes through ``html.escape``; numbers in attributes are formatted here, so no
report value reaches an attribute unescaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

W, H = 600, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 48, 40
INK, MUTED, GRID, BAR, LINE = "#1f2937", "#6b7280", "#e5e7eb", "#2563eb", "#c2410c"
PALE = "#9ca3af"  # the second bar of a pair: the comparison (a hold-out), not the subject


def e(value: Any) -> str:
    """Escaped for HTML text and quoted attribute values."""
    return html.escape(str(value), quote=True)


def number(value: Any) -> float:
    """A report figure as a float: ints, and money as decimal strings."""
    if value is None:
        return 0.0
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return 0.0


def compact(value: float) -> str:
    """An axis label: 950, 12k, 1.5M."""
    size = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:.0f}" if value == int(value) or size >= 10 else f"{value:.1f}"


def money_text(value: Any) -> str:
    """A decimal string with thousands separators: 6745.70 -> 6,745.70."""
    return f"{number(value):,.2f}"


def full(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) or abs(value) >= 100 else f"{value:,.2f}"


def nice_top(top: float, steps: int = 4) -> tuple[float, float]:
    """A round axis maximum at or above ``top`` and its gridline step."""
    if top <= 0:
        return 1.0, 0.25
    raw = top / steps
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(top / step - 1e-9), step


def frame(title: str, subtitle: str, body: str, height: int = H) -> str:
    return (
        f"<svg viewBox='0 0 {W} {height}' width='{W}' height='{height}' role='img' "
        f"xmlns='http://www.w3.org/2000/svg' aria-label='{e(title)}' class='chart'>"
        f"<title>{e(title)}</title>"
        f"<text x='12' y='22' font-size='16' font-weight='bold' fill='{INK}'>{e(title)}</text>"
        f"<text x='12' y='40' font-size='12' fill='{MUTED}'>{e(subtitle)}</text>{body}</svg>"
    )


def empty_chart(title: str, subtitle: str, note: str = "no data in this period") -> str:
    body = (
        f"<text x='{W / 2}' y='{H / 2}' font-size='14' fill='{MUTED}' text-anchor='middle'>"
        f"{e(note)}</text>"
    )
    return frame(title, subtitle, body)


def grid(top: float, step: float, plot_h: float) -> str:
    parts, value = [], 0.0
    while value <= top + step / 2:
        y = TOP + plot_h - plot_h * value / top
        parts.append(
            f"<line x1='{LEFT}' y1='{y:.1f}' x2='{W - RIGHT}' y2='{y:.1f}' stroke='{GRID}'/>"
            f"<text x='{LEFT - 8}' y='{y + 4:.1f}' font-size='12' fill='{MUTED}' "
            f"text-anchor='end'>{e(compact(value))}</text>"
        )
        value += step
    return "".join(parts)


def column_chart(title: str, subtitle: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """Vertical bars on a round scale; each bar's figure above it when they fit."""
    if not values or not any(values):
        return empty_chart(title, subtitle)
    top, step = nice_top(max(max(values), 0))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(values)
    parts = [grid(top, step, plot_h)]
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = plot_h * max(value, 0) / top
        x, y = LEFT + n * slot, TOP + plot_h - height
        parts.append(
            f"<rect x='{x + slot * 0.12:.1f}' y='{y:.1f}' width='{slot * 0.76:.1f}' "
            f"height='{height:.1f}' fill='{BAR}' rx='2'><title>{e(label)}: {e(full(value))}"
            "</title></rect>"
            f"<text x='{x + slot / 2:.1f}' y='{H - BOTTOM + 16}' font-size='12' fill='{INK}' "
            f"text-anchor='middle'>{e(label[:12])}</text>"
        )
        if slot >= 40 and value > 0:
            parts.append(
                f"<text x='{x + slot / 2:.1f}' y='{y - 5:.1f}' font-size='11' fill='{INK}' "
                f"text-anchor='middle'>{e(compact(value))}</text>"
            )
    return frame(title, subtitle, "".join(parts))


def bar_chart(
    title: str, subtitle: str, labels: Sequence[str], values: Sequence[float], limit: int = 10
) -> str:
    """Horizontal bars, largest first as given: the name left, the figure right."""
    labels, values = list(labels)[:limit], list(values)[:limit]
    if not values or not any(values):
        return empty_chart(title, subtitle)
    name_w, figure_w, row_h = 150, 70, 26
    height = max(H, TOP + 12 + row_h * len(values))
    top = max(max(values), 1e-9)
    span = W - name_w - figure_w - RIGHT
    parts = []
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + 8 + n * row_h
        width = span * max(value, 0) / top
        parts.append(
            f"<text x='{name_w - 8}' y='{y + 15}' font-size='13' fill='{INK}' "
            f"text-anchor='end'>{e(label[:20])}</text>"
            f"<rect x='{name_w}' y='{y + 2}' width='{max(width, 1):.1f}' height='{row_h - 8}' "
            f"fill='{BAR}' rx='2'><title>{e(label)}: {e(full(value))}</title></rect>"
            f"<text x='{name_w + width + 6:.1f}' y='{y + 15}' font-size='12' "
            f"fill='{INK}'>{e(full(value))}</text>"
        )
    return frame(title, subtitle, "".join(parts), height)


def line_chart(title: str, subtitle: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """A line with a light area under it, dots on each point, the last figure named."""
    if not values:
        return empty_chart(title, subtitle)
    top, step = nice_top(max(max(values), 0))
    plot_w, plot_h = W - LEFT - RIGHT - 40, H - TOP - BOTTOM
    gap = plot_w / max(len(values) - 1, 1)

    def at(n: int, value: float) -> tuple[float, float]:
        return LEFT + 10 + n * gap, TOP + plot_h - plot_h * max(value, 0) / top

    points = [at(n, v) for n, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    base = TOP + plot_h
    area = f"{points[0][0]:.1f},{base:.1f} {path} {points[-1][0]:.1f},{base:.1f}"
    every = max(1, math.ceil(len(labels) / 8))
    parts = [
        grid(top, step, plot_h),
        f"<polygon points='{area}' fill='{LINE}' fill-opacity='0.12'/>",
        f"<polyline points='{path}' fill='none' stroke='{LINE}' stroke-width='3' "
        "stroke-linejoin='round'/>",
    ]
    for n, ((x, y), label, value) in enumerate(zip(points, labels, values, strict=True)):
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{LINE}'>"
            f"<title>{e(label)}: {e(full(value))}</title></circle>"
        )
        if n % every == 0 or n == len(values) - 1:
            parts.append(
                f"<text x='{x:.1f}' y='{H - BOTTOM + 16}' font-size='12' fill='{INK}' "
                f"text-anchor='middle'>{e(label)}</text>"
            )
    x, y = points[-1]
    parts.append(
        f"<text x='{x - 4:.1f}' y='{y - 10:.1f}' font-size='13' font-weight='bold' "
        f"fill='{LINE}' text-anchor='end'>{e(full(values[-1]))}</text>"
    )
    return frame(title, subtitle, "".join(parts))


def paired_chart(
    title: str,
    subtitle: str,
    rows: Sequence[tuple[str, str, float, float]],
    names: tuple[str, str],
    figure: Callable[[float], str] = full,
) -> str:
    """Two horizontal bars per row on one scale, subject (blue) over comparison
    (grey), each with its figure; a legend names the two. ``rows``: (name, a note
    under the name, first, second)."""
    if not rows or not any(first or second for _, _, first, second in rows):
        return empty_chart(title, subtitle)
    name_w, figure_w, row_h, bar_h = 170, 80, 40, 14
    height = max(H, TOP + 26 + row_h * len(rows))
    top = max(max(max(first, second) for _, _, first, second in rows), 1e-9)
    span = W - name_w - figure_w - RIGHT
    parts = []
    for n, (name, colour) in enumerate(zip(names, (BAR, PALE), strict=True)):
        x = name_w + n * 150
        parts.append(
            f"<rect x='{x}' y='{TOP - 2}' width='12' height='12' fill='{colour}' rx='2'/>"
            f"<text x='{x + 18}' y='{TOP + 8}' font-size='12' fill='{INK}'>{e(name)}</text>"
        )
    for n, (name, note, *values) in enumerate(rows):
        y = TOP + 24 + n * row_h
        parts.append(
            f"<text x='{name_w - 8}' y='{y + 13}' font-size='13' fill='{INK}' "
            f"text-anchor='end'>{e(name[:22])}</text>"
            f"<text x='{name_w - 8}' y='{y + 28}' font-size='11' fill='{MUTED}' "
            f"text-anchor='end'>{e(note)}</text>"
        )
        for k, (value, colour) in enumerate(zip(values, (BAR, PALE), strict=True)):
            width = span * max(value, 0) / top
            bar_y = y + 2 + k * (bar_h + 2)
            parts.append(
                f"<rect x='{name_w}' y='{bar_y}' width='{max(width, 1):.1f}' height='{bar_h}' "
                f"fill='{colour}' rx='2'><title>{e(name)}, {e(names[k])}: {e(figure(value))}"
                f"</title></rect><text x='{name_w + width + 6:.1f}' y='{bar_y + 11}' "
                f"font-size='11' fill='{INK}'>{e(figure(value))}</text>"
            )
    return frame(title, subtitle, "".join(parts), height)


def diverging_chart(
    title: str,
    subtitle: str,
    labels: Sequence[str],
    values: Sequence[float],
    figure: Callable[[float], str] = full,
    lead: tuple[str, int] = ("", 0),
) -> str:
    """Horizontal bars either side of a zero line: gains right in blue, losses left
    in orange, the figure at each bar's end. For figures that can be negative
    (incremental spend, a model's coefficients), which ``bar_chart`` would clip.
    ``lead``: SVG drawn under the subtitle and its height (a gauge)."""
    if not values or not any(values):
        return empty_chart(title, subtitle)
    name_w, figure_w, row_h = 170, 70, 26
    first_y = TOP + 8 + lead[1]
    height = max(H, first_y + row_h * len(values) + 8)
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    span = W - name_w - 2 * figure_w - RIGHT
    scale = span / (high - low)
    zero = name_w + figure_w - low * scale
    parts = [
        lead[0],
        f"<line x1='{zero:.1f}' y1='{first_y - 4}' x2='{zero:.1f}' "
        f"y2='{first_y + row_h * len(values)}' stroke='{MUTED}'/>",
    ]
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = first_y + n * row_h
        width = abs(value) * scale
        left, colour = (zero, BAR) if value >= 0 else (zero - width, LINE)
        text_x, anchor = (zero + width + 6, "start") if value >= 0 else (zero - width - 6, "end")
        parts.append(
            f"<text x='{name_w - 8}' y='{y + 15}' font-size='13' fill='{INK}' "
            f"text-anchor='end'>{e(label[:24])}</text>"
            f"<rect x='{left:.1f}' y='{y + 2}' width='{max(width, 1):.1f}' height='{row_h - 8}' "
            f"fill='{colour}' rx='2'><title>{e(label)}: {e(figure(value))}</title></rect>"
            f"<text x='{text_x:.1f}' y='{y + 15}' font-size='12' fill='{INK}' "
            f"text-anchor='{anchor}'>{e(figure(value))}</text>"
        )
    return frame(title, subtitle, "".join(parts), height)
