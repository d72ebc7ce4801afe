"""HQ's reports pages: an index with the headline charts, and one page per report.

Served by ``sync.hq.http`` behind an operator credential
(``sync.hq.insight.operators``). Every figure comes from ``catalog.run_report``, so
the page, ``hq report`` and the JSON route show the same numbers. The pages are
self-contained: inline CSS and inline SVG, no script, no external asset (the
Content-Security-Policy the server sends forbids them anyway). Every value put
into the HTML goes through ``html.escape``; numbers in SVG attributes are
formatted by ``sync.hq.insight.svg``.

The charts are drawn with ``sync.hq.insight.svg`` rather than by ``charts.py`` (the
file renderer's compact charts) to be read at a glance on a screen: gridlines
with round values, the figure written on each bar, names on horizontal bars.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.insight.campaign_charts import campaign_charts, model_chart, response_charts
from sync.hq.insight.catalog import CAMPAIGN_REPORTS, REPORTS, headline, run_report
from sync.hq.insight.reports import Report
from sync.hq.insight.svg import (
    INK,
    bar_chart,
    column_chart,
    e,
    empty_chart,
    line_chart,
    money_text,
    number,
)

WEEKDAYS = {"1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun"}

DESCRIPTIONS = {
    "liability": "Outstanding points by home store, and what expires in 30 and 90 days",
    "liability_history": "Points issued, redeemed and expired by month; outstanding at month end",
    "rewards": "Redemptions, vouchers and gifts by store and month",
    "ranking": "Members by spend in the period",
    "sales": "Member sales by store, region, age, gender, hour, weekday and category",
    "segments": "RFM segments: champions, loyal, at risk, dormant, ...",
    "dormant": "Members with no purchase for a long time",
    "birthdays": "Consenting members with a birthday coming up",
    "callbacks": "Who to call this week, and with which offer",
    "affinity": "Categories bought together",
    "clusters": "Member clusters by behaviour (needs the insight extra)",
    "campaign_response": "Campaigns: take-up, and spend against the hold-out by segment",
    "campaign_model": "Who takes offers: the response model's AUC and what raises take-up",
    "suggestions": "HQ's suggestions at the counter: suggested, shown and answered, by store",
}

STYLE = (
    "*{box-sizing:border-box}"
    f"body{{font-family:'DejaVu Sans','Liberation Sans',Arial,sans-serif;margin:0;color:{INK};"
    "background:#f3f4f6}"
    "header{background:#111827;color:#fff;padding:14px 28px;display:flex;"
    "align-items:baseline;gap:24px;flex-wrap:wrap}"
    "header h1{font-size:20px;margin:0}header a{color:#93c5fd}"
    "header .who{margin-left:auto;font-size:13px;color:#d1d5db}"
    "main{padding:20px 28px;max-width:1320px}"
    "form.filter{display:flex;gap:12px;align-items:end;margin:0 0 16px;flex-wrap:wrap}"
    "form.filter label{font-size:12px;color:#374151;display:flex;flex-direction:column;gap:2px}"
    "form.filter input{font-size:14px;padding:4px 6px;border:1px solid #9ca3af;border-radius:4px}"
    "button{font-size:14px;padding:5px 14px;border:0;border-radius:4px;background:#2563eb;"
    "color:#fff;cursor:pointer}"
    ".tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px;"
    "margin-bottom:16px}"
    ".tile{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}"
    ".tile .k{font-size:12px;color:#4b5563;text-transform:uppercase;letter-spacing:.03em}"
    ".tile .v{font-size:26px;font-weight:bold;margin-top:4px}"
    ".tile .v.long{font-size:15px;overflow-wrap:anywhere}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}"
    ".card{background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px #0002}"
    ".card svg{width:100%;height:auto;display:block}"
    "h2{font-size:17px;margin:24px 0 8px}"
    "table{border-collapse:collapse;background:#fff;font-size:13px;margin:4px 0 16px}"
    "td,th{border:1px solid #d1d5db;padding:4px 10px;text-align:left;vertical-align:top}"
    "th{background:#f9fafb}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".muted{color:#6b7280;font-size:13px}.empty{color:#6b7280;font-style:italic;padding:16px}"
)


# -- the charts of each report -----------------------------------------------------------


def _by(report: Report, dimension: str) -> list[dict[str, Any]]:
    return [row for row in report["rows"] if row.get("by") == dimension]


def liability_over_time(history: Report) -> str:
    rows = history["rows"]
    return line_chart(
        "Liability over time",
        "outstanding points at each month's end",
        [str(row["month"]) for row in rows],
        [number(row["outstanding"]) for row in rows],
    )


def segment_sizes(segments: Report) -> str:
    sizes = [(str(k), number(v)) for k, v in segments["totals"].items() if k != "members"]
    sizes.sort(key=lambda item: -item[1])
    members = int(number(segments["totals"].get("members")))
    return bar_chart(
        "Segment sizes",
        f"members by RFM segment ({members:,} with a purchase)",
        [name.replace("_", " ") for name, _ in sizes],
        [size for _, size in sizes],
    )


def sales_by_hour(sales: Report, clock: str) -> str:
    spend = {row["key"]: number(row["spend"]) for row in _by(sales, "hour")}
    hours = [str(hour) for hour in range(24)]
    return column_chart(
        "Sales by hour",
        f"member spend by hour of day ({clock})",
        hours,
        [spend.get(h, 0.0) for h in hours],
    )


def sales_by_weekday(sales: Report) -> str:
    spend = {row["key"]: number(row["spend"]) for row in _by(sales, "weekday")}
    return column_chart(
        "Sales by weekday",
        "member spend by day of the week",
        list(WEEKDAYS.values()),
        [spend.get(day, 0.0) for day in WEEKDAYS],
    )


def top_categories(sales: Report) -> str:
    rows = sorted(_by(sales, "category"), key=lambda row: -number(row["spend"]))
    return bar_chart(
        "Top categories",
        "member spend by category, net of refunds (top 10)",
        [str(row["key"]).replace("_", " ") for row in rows],
        [number(row["spend"]) for row in rows],
    )


def liability_by_store(liability: Report) -> str:
    rows = sorted(liability["rows"], key=lambda row: -number(row["points"]))
    return bar_chart(
        "Outstanding points by store",
        "members' home store (top 10)",
        [str(row["store"]) for row in rows],
        [number(row["points"]) for row in rows],
    )


def charts_for(report: Report, clock: str = "UTC") -> list[str]:
    """The charts of one report's page."""
    name = report["report"]
    if name == "liability_history":
        return [liability_over_time(report)]
    if name == "segments":
        return [segment_sizes(report)]
    if name == "liability":
        return [liability_by_store(report)]
    if name == "sales":
        return [sales_by_hour(report, clock), sales_by_weekday(report), top_categories(report)]
    if name == "rewards":
        months: dict[str, float] = {}
        for row in report["rows"]:
            months[row["month"]] = months.get(row["month"], 0.0) + number(row["points"])
        return [
            column_chart(
                "Points redeemed by month", "all stores", list(months), list(months.values())
            )
        ]
    if name == "ranking":
        rows = report["rows"][:10]
        return [
            bar_chart(
                "Top members by spend",
                "net of refunds",
                [str(row["member_id"]) for row in rows],
                [number(row["spend"]) for row in rows],
            )
        ]
    return campaign_charts(report)


# -- pages ---------------------------------------------------------------------------


def _query(filters: Mapping[str, str | None], **more: str) -> str:
    pairs = {key: value for key, value in {**filters, **more}.items() if value}
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def _layout(title: str, operator: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{e(title)}</h1><a href='/v1/reports'>all reports</a>"
        f"<span class='who'>signed in as {e(operator)}</span></header>"
        f"<main>{body}</main></body></html>"
    )


def _filter_form(action: str, filters: Mapping[str, str | None], campaign: bool = False) -> str:
    def field(name: str, label: str, kind: str) -> str:
        return (
            f"<label>{e(label)}<input type='{kind}' name='{name}' "
            f"value='{e(filters.get(name) or '')}'></label>"
        )

    return (
        f"<form class='filter' method='get' action='{e(action)}'>"
        f"{field('from', 'from', 'date')}{field('to', 'to (as of)', 'date')}"
        f"{field('store', 'store', 'text')}"
        f"{field('campaign', 'campaign', 'text') if campaign else ''}"
        "<button type='submit'>show</button></form>"
    )


_DECIMAL = re.compile(r"-?\d+\.\d+")


def _figure(value: Any) -> str:
    """Thousands separated: 12,345 and 6,745.70; anything else as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return money_text(value)
    return str(value)


def _tiles(items: Sequence[tuple[str, Any]]) -> str:
    """One tile per figure; a long text (a timestamp) in smaller type, to fit."""
    figures = [(str(k).replace("_", " "), _figure(v)) for k, v in items]
    return (
        "<div class='tiles'>"
        + "".join(
            f"<div class='tile'><div class='k'>{e(k)}</div>"
            f"<div class='v{' long' if len(v) > 14 else ''}'>{e(v)}</div></div>"
            for k, v in figures
        )
        + "</div>"
    )


def _charts(charts: Sequence[str]) -> str:
    return (
        "<div class='charts'>" + "".join(f"<div class='card'>{c}</div>" for c in charts) + "</div>"
    )


def clock_of(store: HQStore) -> str:
    """How hours are counted (``facts``: UTC unless ``insight_utc_offset_minutes``)."""
    with store.read() as tx:
        row = tx.one("SELECT value FROM hq_meta WHERE key = 'insight_utc_offset_minutes'")
    try:
        minutes = int(str(row[0])) if row else 0
    except ValueError:
        minutes = 0
    if not minutes:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def index_page(store: HQStore, filters: Mapping[str, str | None], operator: str) -> str:
    """The index: headline figures and charts, and a link to every report."""
    start, end, store_id = filters.get("from"), filters.get("to"), filters.get("store")
    figures = headline(store, start, end, store_id)
    liability, history = figures["liability"], figures["liability_history"]
    segments, sales = figures["segments"], figures["sales"]
    totals = liability["totals"]
    period = sales["period"]
    tiles = _tiles(
        [
            ("outstanding points", totals["points"]),
            ("liability value", totals["value"]),
            ("expiring in 30 days", totals["expiring_30d"]),
            ("members with a purchase", segments["totals"]["members"]),
            ("member sales", sales["totals"]["spend"]),
            ("receipts", sales["totals"]["receipts"]),
        ]
    )
    charts = _charts(
        [
            liability_over_time(history),
            segment_sizes(segments),
            sales_by_hour(sales, clock_of(store)),
            sales_by_weekday(sales),
            top_categories(sales),
            liability_by_store(liability),
        ]
    )
    campaigns = _campaign_section(store, start, end, store_id)
    links = "".join(
        f"<tr><td><a href='{e('/v1/reports/' + name + _query(filters))}'>{e(name)}</a></td>"
        f"<td>{e(DESCRIPTIONS.get(name, ''))}</td>"
        f"<td><a href='{e('/v1/reports/' + name + _query(filters, format='csv'))}'>CSV</a> "
        f"<a href='{e('/v1/reports/' + name + _query(filters, format='json'))}'>JSON</a></td></tr>"
        for name in REPORTS
    )
    scope = f"store {store_id}" if store_id else "all stores"
    body = (
        _filter_form("/v1/reports", filters)
        + f"<p class='muted'>{e(scope)}; from {e(period['from'] or 'the start')} "
        f"to {e(period['to'])}</p>"
        + tiles
        + charts
        + campaigns
        + "<h2>Reports</h2><table><thead><tr><th>report</th><th>what it shows</th>"
        f"<th>data</th></tr></thead><tbody>{links}</tbody></table>"
    )
    return _layout("tillpoints HQ reports", operator, body)


# Why the index has no response model to show, for the errors that only mean "not yet".
_NO_MODEL = {
    "no_training_data": "no model yet: it learns from campaigns with takes",
    "insight_extra_missing": "needs the insight extra: pip install 'tillpoints[insight]'",
}


def _campaign_section(
    store: HQStore, start: str | None, end: str | None, store_id: str | None
) -> str:
    """Campaigns at a glance: the newest campaign's arms and increment by segment,
    and the response model (fitted on first use, then reused). Without campaigns
    with takes, or without the insight extra, the model's card says so and the
    rest of the page stands."""
    response = run_report(store, "campaign_response", start, end, store_id)
    try:
        model = run_report(store, "campaign_model")
    except SyncError as error:
        if error.code not in _NO_MODEL:
            raise
        auc, model_card = (
            None,
            empty_chart(
                "Response model",
                "who takes an offer, learnt from past campaigns",
                _NO_MODEL[error.code],
            ),
        )
    else:
        auc, model_card = model["totals"]["auc"], model_chart(model)
    totals = response["totals"]
    tiles = _tiles(
        [
            ("campaigns", totals["campaigns"]),
            ("offered members", totals["offered"]),
            ("took the offer", totals["takers"]),
            ("incremental spend", totals["incremental_spend"]),
            ("model AUC", "-" if auc is None else f"{auc:.2f}"),
        ]
    )
    return "<h2>Campaigns</h2>" + tiles + _charts([*response_charts(response, 1), model_card])


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric or (isinstance(value, str) and _DECIMAL.fullmatch(value)):
        return f"<td class='n'>{e(value)}</td>"
    return f"<td>{e(value if value is not None else '')}</td>"


MAX_ROWS = 2000


def report_page(
    report: Report, filters: Mapping[str, str | None], operator: str, clock: str = "UTC"
) -> str:
    """One report: its totals, its charts, its rows (the first 2,000; all in the CSV)."""
    name = str(report["report"])
    rows: list[dict[str, Any]] = report["rows"]
    columns: list[str] = []
    for row in rows[:MAX_ROWS]:
        columns.extend(key for key in row if key not in columns)
    head = "".join(f"<th>{e(column)}</th>" for column in columns)
    table = "".join(
        "<tr>" + "".join(_cell(row.get(column)) for column in columns) + "</tr>"
        for row in rows[:MAX_ROWS]
    )
    more = (
        f"<p class='muted'>{len(rows) - MAX_ROWS:,} more rows in the CSV.</p>"
        if len(rows) > MAX_ROWS
        else ""
    )
    totals = report.get("totals", {})
    flat = [(k, v) for k, v in totals.items() if not isinstance(v, dict | list)]
    nested = "".join(
        f"<tr><th>{e(k)}</th><td>{e(', '.join(map(str, v)) if isinstance(v, list) else v)}"
        "</td></tr>"
        for k, v in totals.items()
        if isinstance(v, dict | list)
    )
    charts = charts_for(report, clock)
    csv_link = "/v1/reports/" + name + _query(filters, format="csv")
    json_link = "/v1/reports/" + name + _query(filters, format="json")
    period = report.get("period", {})
    scope = "store " + period["store"] if period.get("store") else "all stores"
    if period.get("campaign"):
        scope += ", campaign " + period["campaign"]
    upto = period.get("to") or "the newest data"
    body = (
        _filter_form("/v1/reports/" + name, filters, name in CAMPAIGN_REPORTS)
        + f"<p class='muted'>{e(DESCRIPTIONS.get(name, ''))}. "
        f"From {e(period.get('from') or 'the start')} to {e(upto)}; {e(scope)}. "
        f"<a href='{e(csv_link)}'>CSV</a> <a href='{e(json_link)}'>JSON</a></p>"
        + _tiles(flat)
        + (f"<table>{nested}</table>" if nested else "")
        + (_charts(charts) if charts else "")
        + f"<h2>Rows ({len(rows):,})</h2>"
        + (
            f"<table><thead><tr>{head}</tr></thead><tbody>{table}</tbody></table>{more}"
            if rows
            else "<p class='empty'>no rows in this period</p>"
        )
    )
    return _layout(f"tillpoints report: {name}", operator, body)


def login_page(message: str = "", next_page: str | None = None) -> str:
    """The sign-in form: the operator token is posted once and traded for a cookie;
    ``next_page``: where to go after (a console page, checked by the server)."""
    note = f"<p class='muted'>{e(message)}</p>" if message else ""
    after = f"<input type='hidden' name='next' value='{e(next_page)}'>" if next_page else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>tillpoints HQ: sign in</title><style>{STYLE}</style></head><body>"
        "<header><h1>tillpoints HQ reports</h1></header><main>"
        "<h2>Sign in with an operator token</h2>"
        "<p class='muted'>Ask for one with <code>tillpoints hq operator-token</code>.</p>"
        f"{note}<form class='filter' method='post' action='/v1/reports/login'>"
        "<label>operator token<input type='password' name='token' autocomplete='off' "
        f"size='50' required></label>{after}<button type='submit'>sign in</button></form>"
        "</main></body></html>"
    )
