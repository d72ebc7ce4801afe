"""The reports by name, run in one read snapshot after the facts are brought up
to date, and written as JSON, CSV or HTML.

``hq report NAME`` and the HTML page both come through ``run_report``, so the
command line, the file and the page always show the same numbers.

A report is a function of one read snapshot. The campaign reports need a write
first, done by their ``PREPARE`` step before the snapshot opens: the tills'
offer takes read into ``cmp_takes``, and the response model fitted and stored on
first use or when the campaign data has grown (``stored_model.ensure``).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from collections.abc import Callable
from typing import Any

from sync.errors import invalid
from sync.hq.db import HQStore, Tx
from sync.hq.insight import audience, reports, response, stored_model, suggestions
from sync.hq.insight.facts import refresh
from sync.hq.insight.reports import Period, Report
from sync.hq.insight.takes import refresh_takes

REPORTS: dict[str, Callable[[Tx, Period], Report]] = {
    "liability": reports.liability,
    "liability_history": reports.liability_history,
    "rewards": reports.rewards,
    "ranking": reports.ranking,
    "sales": reports.sales,
    "segments": audience.segments,
    "dormant": audience.dormant,
    "birthdays": audience.birthdays,
    "callbacks": audience.callbacks,
    "affinity": reports.affinity,
    "clusters": lambda tx, period: _clusters(tx, period),
    "campaign_response": response.campaign_response,
    "campaign_model": stored_model.campaign_model,
    "suggestions": suggestions.report,
}
PREPARE: dict[str, Callable[[HQStore, str | None], object]] = {
    "campaign_response": lambda store, campaign: (
        refresh_takes(store),
        suggestions.refresh_answers(store),
    ),
    "suggestions": suggestions.prepare_report,
    "campaign_model": stored_model.prepare,
}
# The reports that take ``--campaign`` (one campaign, by name or id).
CAMPAIGN_REPORTS = ("campaign_response", "campaign_model")
# Chain-wide whatever the filters: the response model learns from every campaign.
UNFILTERED = ("campaign_model",)
# Reports of what is happening now: ``--to`` defaults to today, not the newest sale.
LIVE = ("suggestions",)


def _clusters(tx: Tx, period: Period) -> Report:
    """Imported on use: numpy and scikit-learn are the optional ``insight`` extra."""
    from sync.hq.insight.clusters import clusters

    return clusters(tx, period)


FORMATS = ("json", "csv", "html")


def _day(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise invalid("invalid_date", f"{field}: {value[:20]!r} is not a date YYYY-MM-DD") from None


def _days(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    start, end = _day(start, "from"), _day(end, "to")
    if start and end and start > end:
        raise invalid("invalid_date", "from: is after to")
    return start, end


def run_report(
    store: HQStore,
    name: str,
    start: str | None = None,
    end: str | None = None,
    store_id: str | None = None,
    campaign: str | None = None,
) -> Report:
    if name not in REPORTS:
        raise invalid("unknown_report", f"report: {name!r} is not one of {', '.join(REPORTS)}")
    if campaign is not None and name not in CAMPAIGN_REPORTS:
        raise invalid(
            "invalid_option", f"campaign: only for {', '.join(CAMPAIGN_REPORTS)}, not {name}"
        )
    start, end = _days(start, end)
    refresh(store)
    if name in PREPARE:
        PREPARE[name](store, campaign)
    with store.read() as tx:
        period = _period(tx, name, start, end, store_id, store.dialect, campaign)
        report = REPORTS[name](tx, period)
        end = period.end
    report["period"] = {"from": start, "to": end, "store": store_id}
    if name in UNFILTERED:
        report["period"] = {"from": None, "to": None, "store": None}
    if name in CAMPAIGN_REPORTS:
        report["period"]["campaign"] = campaign
    return report


def _period(
    tx: Tx,
    name: str,
    start: str | None,
    end: str | None,
    store_id: str | None,
    dialect: str,
    campaign: str | None = None,
) -> Period:
    if end is None and name in LIVE:
        end = dt.date.today().isoformat()
    if end is None:
        row = tx.one("SELECT MAX(day) FROM ins_sales")
        end = str(row[0]) if row and row[0] else dt.date.today().isoformat()
    return Period(start, end, store_id, dt.date.fromisoformat(end), dialect, campaign)


HEADLINE = {
    "liability": reports.liability,
    "liability_history": reports.liability_history,
    "segments": audience.segment_sizes,
    "sales": reports.sales_summary,
}


def headline(
    store: HQStore, start: str | None = None, end: str | None = None, store_id: str | None = None
) -> dict[str, Report]:
    """The reports page's figures, in one read snapshot after one refresh: the
    liability and its history, the segments' sizes (no row per member) and the
    sales' spend and receipts (no member counts), all read from the aggregates
    (``sync.hq.insight.aggregates``) where the period allows."""
    start, end = _days(start, end)
    refresh(store)
    with store.read() as tx:
        period = _period(tx, "liability", start, end, store_id, store.dialect)
        figures = {name: report(tx, period) for name, report in HEADLINE.items()}
    for report in figures.values():
        report["period"] = {"from": start, "to": period.end, "store": store_id}
    return figures


def to_csv(report: Report) -> str:
    rows: list[dict[str, Any]] = report["rows"]
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, columns or ["empty"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_html(report: Report, chart: str = "") -> str:
    """A self-contained page: the totals, an optional inline SVG chart, the rows."""
    title = html.escape(f"tillpoints: {report['report']}")
    totals = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in report["totals"].items()
    )
    rows: list[dict[str, Any]] = report["rows"]
    columns = list(rows[0]) if rows else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows[:2000]
    )
    more = f"<p>{len(rows) - 2000} more rows in the CSV.</p>" if len(rows) > 2000 else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
        f"<table class='totals'>{totals}</table>{chart}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"
        "</body></html>"
    )


STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}"
    "th{background:#f3f3f3}.chart{margin:1em 2em 1em 0;display:inline-block}"
)


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        from sync.hq.insight.charts import chart_for

        return to_html(report, chart_for(report))
    raise invalid("invalid_format", f"format: one of {', '.join(FORMATS)}")
