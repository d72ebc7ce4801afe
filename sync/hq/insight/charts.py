"""Inline SVG charts for the HTML reports: no JavaScript, no build, no network.

A page that opens from a file or behind HQ's operator token shows the same
picture; bars and lines are drawn from the report's own figures.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from sync.hq.insight.campaign_charts import campaign_charts

WIDTH, HEIGHT, PAD = 520, 220, 36


def _number(value: Any) -> float:
    return float(str(value).replace(",", "")) if value is not None else 0.0


def bars(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    if not values:
        return ""
    top = max(max(values), 1e-9)
    step = (WIDTH - 2 * PAD) / len(values)
    parts = []
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = (HEIGHT - 2 * PAD) * max(value, 0) / top
        x, y = PAD + n * step, HEIGHT - PAD - height
        parts.append(
            f"<rect x='{x + 1:.1f}' y='{y:.1f}' width='{max(step - 2, 1):.1f}' "
            f"height='{height:.1f}' fill='#3b7dd8'><title>{html.escape(label)}: {value:g}"
            "</title></rect>"
        )
        if len(values) <= 24 or n % 2 == 0:
            parts.append(
                f"<text x='{x + step / 2:.1f}' y='{HEIGHT - PAD + 12}' font-size='9' "
                f"text-anchor='middle'>{html.escape(label[:10])}</text>"
            )
    return _frame(title, "".join(parts), top)


def line(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    if not values:
        return ""
    top = max(max(values), 1e-9)
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    points = " ".join(
        f"{PAD + n * step:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * max(v, 0) / top:.1f}"
        for n, v in enumerate(values)
    )
    ticks = "".join(
        f"<text x='{PAD + n * step:.1f}' y='{HEIGHT - PAD + 12}' font-size='9' "
        f"text-anchor='middle'>{html.escape(label)}</text>"
        for n, label in enumerate(labels)
        if n % max(1, len(labels) // 8) == 0
    )
    body = f"<polyline points='{points}' fill='none' stroke='#d8573b' stroke-width='2'/>{ticks}"
    return _frame(title, body, top)


def _frame(title: str, body: str, top: float) -> str:
    return (
        f"<svg class='chart' width='{WIDTH}' height='{HEIGHT}' role='img' "
        f"xmlns='http://www.w3.org/2000/svg' aria-label='{html.escape(title)}'>"
        f"<text x='{PAD}' y='16' font-size='13' font-weight='bold'>{html.escape(title)}</text>"
        f"<text x='2' y='{PAD}' font-size='9'>{top:,.0f}</text>"
        f"<line x1='{PAD}' y1='{HEIGHT - PAD}' x2='{WIDTH - PAD}' y2='{HEIGHT - PAD}' "
        f"stroke='#888'/>{body}</svg>"
    )


def chart_for(report: dict[str, Any]) -> str:
    name, rows = report["report"], report["rows"]
    if name == "liability_history":
        return line(
            "Outstanding points by month",
            [r["month"] for r in rows],
            [r["outstanding"] for r in rows],
        )
    if name == "segments":
        sizes = {k: v for k, v in report["totals"].items() if k != "members"}
        return bars("Segment sizes", list(sizes), [float(v) for v in sizes.values()])
    if name == "liability":
        return bars("Outstanding points by store", [r["store"] for r in rows],
                    [r["points"] for r in rows])  # fmt: skip
    if name == "sales":
        out = []
        for by, title in (("hour", "Sales by hour"), ("weekday", "Sales by weekday (1 = Mon)"),
                          ("category", "Sales by category")):  # fmt: skip
            picked = [r for r in rows if r["by"] == by]
            if by == "category":
                picked.sort(key=lambda r: -_number(r["spend"]))
            out.append(
                bars(title, [r["key"] for r in picked], [_number(r["spend"]) for r in picked])
            )
        return "".join(out)
    return "".join(campaign_charts(report))
