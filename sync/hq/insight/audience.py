"""Who to talk to: RFM segments, dormant members, birthdays, call-back lists.

Segments are one SQL statement: recency, frequency and monetary value per
enrolled member who bought at least once, scored 1-5 by quintile of rank
(``1 + (RANK() - 1) * 5 / COUNT(*)``: equal values share a score, and integer
arithmetic gives the same scores on SQLite and PostgreSQL), then named by a
fixed table of rules, first match wins, so every member is in exactly one
segment.

The store lists carry what a counter needs and no more (docs/architecture.md,
Trust): the member id (the till's directory has the name), the home store, the
reason and what to offer; only members who consented to marketing are put on a
list that leads to contacting them.
"""

# ruff: noqa: S608 -- SQL here is built from constant fragments (table and column
# names, CASE rules); every value is bound as a parameter.

from __future__ import annotations

import datetime as dt
from typing import Any

from sync.hq.db import Tx
from sync.hq.insight.aggregates import covers_members
from sync.hq.insight.reports import Period, Report, money

DORMANT_DAYS = 180
# (segment, SQL condition over recency, tenure and the r/f/m scores), in order.
SEGMENT_RULES = (
    ("dormant", f"recency > {DORMANT_DAYS}"),
    ("new", "tenure <= 30"),
    ("champions", "r >= 4 AND f >= 4 AND mo >= 4"),
    ("loyal", "f >= 4 AND r >= 3"),
    ("at_risk", "r <= 2 AND (f >= 3 OR mo >= 3)"),
    ("promising", "r >= 3"),
    ("hibernating", "1 = 1"),
)
SEGMENTS = tuple(name for name, _ in SEGMENT_RULES)


# Enrolled members (``home``: the enrolment's store) who earned at least once.
_AGGREGATED = "FROM agg_members a WHERE a.home IS NOT NULL AND a.earns > 0"


def _rfm_sql(tx: Tx, period: Period) -> tuple[str, list[Any]]:
    """The CTE ``named``: each member's recency, frequency, spend, scores and
    segment. The whole history as of its newest day reads ``agg_members`` (one row
    per member, kept up to date at each refresh); any other period reads its sales."""
    name = " ".join(f"WHEN {rule} THEN '{segment}'" for segment, rule in SEGMENT_RULES)
    if covers_members(tx, period.start, period.store, period.as_of.isoformat()):
        params: list[Any] = []
        members = (
            "SELECT a.member, a.last_no, a.first_no, a.visits AS frequency, a.monetary "
            + _AGGREGATED
        )
    else:
        where, params = period.where("s.day", "s.store")
        visit = "CASE WHEN s.kind IN ('earn', 'redeem') THEN s.device || ':' || s.receipt END"
        members = (
            "SELECT s.member, MAX(CASE WHEN s.kind = 'earn' THEN s.day_no END) AS last_no, "
            "MIN(CASE WHEN s.kind = 'earn' THEN s.day_no END) AS first_no, "
            f"COUNT(DISTINCT {visit}) AS frequency, SUM(s.amount) AS monetary "
            "FROM ins_sales s JOIN ins_members i ON i.member_id = s.member "
            f"WHERE s.kind IN ('earn', 'redeem', 'refund') AND {where} GROUP BY s.member "
            "HAVING MAX(CASE WHEN s.kind = 'earn' THEN 1 ELSE 0 END) = 1"
        )
    sql = (
        f"WITH m AS ({members}), "
        "scored AS (SELECT member, ? - last_no AS recency, ? - first_no AS tenure, frequency, "
        "monetary, 1 + ((RANK() OVER (ORDER BY last_no) - 1) * 5) / COUNT(*) OVER () AS r, "
        "1 + ((RANK() OVER (ORDER BY frequency) - 1) * 5) / COUNT(*) OVER () AS f, "
        "1 + ((RANK() OVER (ORDER BY monetary) - 1) * 5) / COUNT(*) OVER () AS mo FROM m), "
        f"named AS (SELECT scored.*, CASE {name} END AS segment FROM scored) "
    )
    return sql, [*params, period.as_of_no, period.as_of_no]


def segments(tx: Tx, period: Period) -> Report:
    sql, params = _rfm_sql(tx, period)
    rows = tx.all(
        sql + "SELECT n.member, i.store, n.recency, n.frequency, n.monetary, n.r, n.f, n.mo, "
        "n.segment FROM named n JOIN ins_members i ON i.member_id = n.member "
        f"ORDER BY {period.text_order('n.member')}",
        params,
    )
    sizes = _sizes(tx, sql, params)
    out = [
        {
            "member_id": str(member),
            "store": str(store),
            "recency_days": int(recency),
            "frequency": int(frequency),
            "monetary": money(monetary),
            "r": int(r),
            "f": int(f),
            "m": int(mo),
            "rfm": f"{int(r)}{int(f)}{int(mo)}",
            "segment": str(segment),
        }
        for member, store, recency, frequency, monetary, r, f, mo, segment in rows
    ]
    return {"report": "segments", "rows": out, "totals": sizes}


def _sizes(tx: Tx, sql: str, params: list[Any]) -> dict[str, int]:
    return _totals(tx.all(sql + "SELECT segment, COUNT(*) FROM named GROUP BY segment", params))


def _totals(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    found = {str(name): int(n) for name, n in rows}
    totals = {name: found.get(name, 0) for name in SEGMENTS}
    totals["members"] = sum(totals.values())
    return totals


def segment_sizes(tx: Tx, period: Period) -> Report:
    """The segments report's totals alone (the reports page's chart), without a
    row per member. Over ``agg_members`` no member is ranked: a score is
    ``1 + (RANK() - 1) * 5 // n``, so a value scores at least k exactly when it
    is above the value in place ``ceil((k - 1) * n / 5)`` of the sorted values.
    Those four places of each measure come from the histograms each refresh keeps
    (``agg_recency``: last earn day x visits; ``agg_spend``); one pass then counts
    the segments."""
    if not covers_members(tx, period.start, period.store, period.as_of.isoformat()):
        sql, params = _rfm_sql(tx, period)
        return {"report": "segments", "rows": [], "totals": _sizes(tx, sql, params)}
    # The histograms each refresh keeps (aggregates: agg_recency, agg_spend).
    rows = tx.all("SELECT last_no, visits, members FROM agg_recency")
    pairs = [(int(last), int(visits), int(count)) for last, visits, count in rows]
    n = sum(count for _, _, count in pairs)
    places = [-(-(k - 1) * n // 5) for k in range(2, 6)]
    cuts = {
        column: _cuts_of_histogram([(pair[at], pair[2]) for pair in pairs], places)
        for at, column in enumerate(("a.last_no", "a.visits"))
    }
    spend = [(int(value), int(count)) for value, count in tx.all("SELECT * FROM agg_spend")]
    cuts["a.monetary"] = _cuts_of_histogram(spend, places)
    scores = {
        name: "1 + " + " + ".join(f"CASE WHEN {column} > ? THEN 1 ELSE 0 END" for _ in places)
        for name, column in (("r", "a.last_no"), ("f", "a.visits"), ("mo", "a.monetary"))
    }
    name = " ".join(f"WHEN {rule} THEN '{segment}'" for segment, rule in SEGMENT_RULES)
    rows = tx.all(
        f"WITH scored AS (SELECT ? - a.last_no AS recency, ? - a.first_no AS tenure, "
        f"{scores['r']} AS r, {scores['f']} AS f, {scores['mo']} AS mo {_AGGREGATED}) "
        f"SELECT CASE {name} END, COUNT(*) FROM scored GROUP BY CASE {name} END",
        [period.as_of_no, period.as_of_no, *cuts["a.last_no"], *cuts["a.visits"],
         *cuts["a.monetary"]],
    )  # fmt: skip
    return {"report": "segments", "rows": [], "totals": _totals(rows)}


def _cuts_of_histogram(counts: list[tuple[int, int]], places: list[int]) -> list[Any]:
    """The values in ``places`` (1-based) of the sorted values, from (value, count)."""
    histogram: dict[int, int] = {}
    for value, count in counts:
        histogram[value] = histogram.get(value, 0) + count
    cuts: list[Any] = []
    seen = 0
    wanted = iter(places)
    place = next(wanted, None)
    for value in sorted(histogram):
        seen += histogram[value]
        while place is not None and seen >= place:
            cuts.append(value)
            place = next(wanted, None)
    return cuts + [None] * (len(places) - len(cuts))


def dormant(tx: Tx, period: Period, days: int = DORMANT_DAYS) -> Report:
    """Enrolled members with no purchase in ``days`` (never, if they enrolled that
    long ago and never bought)."""
    where, params = period.where("m.enrolled_day", "m.store")
    cutoff = period.as_of_no - days
    rows = tx.all(
        "SELECT m.member_id, m.store, m.consent, MAX(s.day), MAX(s.day_no) FROM ins_members m "
        "LEFT JOIN ins_sales s ON s.member = m.member_id AND s.kind = 'earn' AND s.day <= ? "
        f"WHERE m.enrolled_no <= ? AND {where} GROUP BY m.member_id, m.store, m.consent "
        "HAVING MAX(s.day_no) IS NULL OR MAX(s.day_no) <= ? "
        f"ORDER BY {period.text_order('m.store')}, {period.text_order('m.member_id')}",
        [period.as_of.isoformat(), cutoff, *params, cutoff],
    )
    out = [
        {
            "member_id": str(member),
            "store": str(store),
            "last_purchase": last,
            "days_since": None if last_no is None else period.as_of_no - int(last_no),
            "reason": "never bought" if last is None else f"no purchase for {days} days",
            "contact": bool(consent),
        }
        for member, store, consent, last, last_no in rows
    ]
    return {"report": "dormant", "rows": out, "totals": {"members": len(out), "days": days}}


def _upcoming(period: Period, days: int) -> list[str]:
    return [(period.as_of + dt.timedelta(days=n)).strftime("%m-%d") for n in range(1, days + 1)]


def birthdays(tx: Tx, period: Period, days: int = 30) -> Report:
    """Consenting members whose birthday (month and day, no year) is in the next
    ``days`` days."""
    upcoming = _upcoming(period, days)
    marks = ", ".join("?" * len(upcoming))
    store_clause, params = ("AND store = ?", [period.store]) if period.store else ("", [])
    rows = tx.all(
        f"SELECT member_id, store, birthday FROM ins_members WHERE consent = 1 "
        f"AND birthday IN ({marks}) {store_clause}",
        [*upcoming, *params],
    )
    rank = {day: n for n, day in enumerate(upcoming)}
    out = [
        {
            "member_id": str(member),
            "store": str(store),
            "birthday": str(day),
            "reason": "birthday",
            "offer": "birthday gift at the counter; points count double this month",
        }
        for member, store, day in sorted(rows, key=lambda row: (rank[row[2]], row[1], row[0]))
    ]
    return {"report": "birthdays", "rows": out, "totals": {"members": len(out), "days": days}}


def callbacks(tx: Tx, period: Period) -> Report:
    """One line per consenting member a store should contact, by first reason:
    points about to expire, a good customer slipping away (RFM ``at_risk``), a
    birthday within two weeks, a new member who has not come back."""
    from sync.hq.insight.reports import liability_by_member

    reasons: dict[str, tuple[str, str, str]] = {}
    consent = {str(m): str(s) for m, s in tx.all(
        "SELECT member_id, store FROM ins_members WHERE consent = 1")}  # fmt: skip

    def add(member: str, reason: str, offer: str) -> None:
        wanted = member in consent and member not in reasons
        if wanted and (period.store is None or consent[member] == period.store):
            reasons[member] = (consent[member], reason, offer)

    for member, expiring in liability_by_member(tx, period, 30):
        if expiring >= 100:
            add(member, "points_expiring", f"remind: {expiring} points expire within 30 days")
    sql, params = _rfm_sql(tx, period)
    for (member,) in tx.all(sql + "SELECT member FROM named WHERE segment = 'at_risk'", params):
        add(str(member), "at_risk", "voucher worth 5.00 on the next visit")
    for row in birthdays(tx, period, 14)["rows"]:
        add(row["member_id"], "birthday", row["offer"])
    new = tx.all(
        "SELECT m.member_id FROM ins_members m JOIN ins_sales s ON s.member = m.member_id "
        "AND s.kind = 'earn' AND s.day <= ? WHERE m.enrolled_no BETWEEN ? AND ? "
        "GROUP BY m.member_id HAVING COUNT(*) = 1",
        (period.as_of.isoformat(), period.as_of_no - 60, period.as_of_no - 14),
    )
    for (member,) in new:
        add(str(member), "new_no_return", "double points on the second visit")
    out = [
        {"member_id": member, "store": store, "reason": reason, "offer": offer}
        for member, (store, reason, offer) in sorted(
            reasons.items(), key=lambda item: (item[1][0], item[1][1], item[0])
        )
    ]
    counts: dict[str, int] = {}
    for row in out:
        counts[row["reason"]] = counts.get(row["reason"], 0) + 1
    return {"report": "callbacks", "rows": out, "totals": {"members": len(out), **counts}}
