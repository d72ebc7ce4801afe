"""Money and basket reports: liability, rewards, ranking, sales, affinity.

Each report is SQL aggregations over the journals (``entries``) and the facts
derived from them (``sync.hq.insight.facts``), written once for SQLite and
PostgreSQL and run in one read snapshot. Python only formats: money leaves as
decimal strings (docs/contract.md), ratios are computed from integer counts so both
backends print the same digits. Where a comparison of text must order the same
on both, ``text_order`` pins PostgreSQL to byte order (its default collation
may follow the locale).
"""

# ruff: noqa: S608 -- SQL here is built from constant fragments (table and column
# names, CASE rules); every value is bound as a parameter.

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from agent.money import format_amount
from agent.rules import Rules, default_rules_text, load_rules_text
from sync.hq.db import Tx
from sync.hq.insight.aggregates import covers_members, expiry_covers, newest_day

Report = dict[str, Any]
AGE_BANDS = ((25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54"), (65, "55-64"))


@dataclass(frozen=True)
class Period:
    """``--from``/``--to`` (inclusive local days), ``--store``, the day the report
    is as of (``--to``, else the newest day in the data), and ``--campaign`` (the
    campaign reports only)."""

    start: str | None
    end: str | None
    store: str | None
    as_of: dt.date
    dialect: str
    campaign: str | None = None

    def where(self, day: str = "day", store: str = "store") -> tuple[str, list[Any]]:
        clauses, params = ["1 = 1"], []
        if self.start:
            clauses.append(f"{day} >= ?")
            params.append(self.start)
        clauses.append(f"{day} <= ?")
        params.append(self.as_of.isoformat())
        if self.store:
            clauses.append(f"{store} = ?")
            params.append(self.store)
        return " AND ".join(clauses), params

    @property
    def as_of_no(self) -> int:
        return (self.as_of - dt.date(1970, 1, 1)).days

    def text_order(self, expression: str) -> str:
        return f'{expression} COLLATE "C"' if self.dialect == "postgresql" else expression


def rules_of(tx: Tx) -> Rules:
    row = tx.one("SELECT value FROM hq_meta WHERE key = 'rules'")
    return load_rules_text(str(row[0]) if row else default_rules_text())


def money(minor: Any) -> str:
    return format_amount(int(minor or 0))


def _aggregated(tx: Tx, period: Period) -> bool:
    """Whether the balances as of ``period`` are the aggregates' (no entry after it,
    a30 and a90 counted from its day)."""
    upto = (period.as_of + dt.timedelta(days=1)).isoformat()
    newest = newest_day(tx)
    return (newest is None or newest < upto) and expiry_covers(tx, period.as_of.isoformat())


def _balances(tx: Tx, period: Period) -> tuple[str, list[Any]]:
    """A CTE ``s(member, store, points, x30, x90)``: every account's balance (as
    ``hq balance`` sums it), its home store and what of it expires within 30 and
    90 days. Oldest-expiring lots are spent first, so what expires by a day is the
    balance beyond the lots that expire after it. As of the newest sale's day, with
    no entry after it, all of it is in ``agg_members`` (points, a30, a90); as of
    an earlier day it is summed from every entry and lot before."""
    upto = (period.as_of + dt.timedelta(days=1)).isoformat()
    day30 = (period.as_of + dt.timedelta(days=30)).isoformat()
    day90 = (period.as_of + dt.timedelta(days=90)).isoformat()
    if _aggregated(tx, period):
        sql = (
            "WITH s AS (SELECT a.member, COALESCE(a.home, a.seen) AS store, a.points, "
            "CASE WHEN a.points > a.a30 THEN a.points - a.a30 ELSE 0 END AS x30, "
            "CASE WHEN a.points > a.a90 THEN a.points - a.a90 ELSE 0 END AS x90 "
            "FROM agg_members a WHERE a.entries > 0) "
        )
        return sql, []
    sql = (
        "WITH bal AS (SELECT COALESCE(c.member_id, e.account) AS member, MIN(d.store) AS seen, "
        "SUM(e.delta - e.expired) AS points FROM entries e "
        "JOIN devices d ON d.device = e.device LEFT JOIN ins_cards c ON c.account = e.account "
        "WHERE e.account IS NOT NULL AND e.ts < ? GROUP BY COALESCE(c.member_id, e.account)), "
        "later AS (SELECT member, SUM(CASE WHEN expires_on > ? THEN points ELSE 0 END) AS a30, "
        "SUM(CASE WHEN expires_on > ? THEN points ELSE 0 END) AS a90 FROM ins_lots "
        "WHERE day <= ? GROUP BY member), "
        "s AS (SELECT b.member, COALESCE(m.store, b.seen) AS store, b.points, "
        "CASE WHEN b.points - COALESCE(l.a30, 0) > 0 THEN b.points - COALESCE(l.a30, 0) "
        "ELSE 0 END AS x30, "
        "CASE WHEN b.points - COALESCE(l.a90, 0) > 0 THEN b.points - COALESCE(l.a90, 0) "
        "ELSE 0 END AS x90 FROM bal b LEFT JOIN ins_members m ON m.member_id = b.member "
        "LEFT JOIN later l ON l.member = b.member) "
    )
    return sql, [upto, day30, day90, period.as_of.isoformat()]


def liability_by_member(tx: Tx, period: Period, days: int = 30) -> list[tuple[str, int]]:
    sql, params = _balances(tx, period)
    column = "x30" if days <= 30 else "x90"
    return [
        (str(member), int(points))
        for member, points in tx.all(
            sql + f"SELECT member, {column} FROM s WHERE {column} > 0", params
        )
    ]


def liability(tx: Tx, period: Period) -> Report:
    """Outstanding points by members' home store (cards never enrolled: the store
    that issued them), with what expires within 30 and 90 days."""
    where, extra = ("s.store = ?", [period.store]) if period.store else ("1 = 1", [])
    if _aggregated(tx, period):
        # A row per store, kept by each refresh (aggregates, agg_liability).
        sql, params = "", list[Any]()
        sums = "s.store, COALESCE(r.region, 'unknown'), s.accounts, s.points, s.x30, s.x90 "
        source, group = "agg_liability s", ""
    else:
        sql, params = _balances(tx, period)
        sums = "s.store, COALESCE(r.region, 'unknown'), COUNT(*), SUM(s.points), SUM(s.x30), "
        sums += "SUM(s.x90) "
        source, group = "s", "GROUP BY s.store, r.region "
    rows = tx.all(
        f"{sql}SELECT {sums}FROM {source} LEFT JOIN ins_stores r ON r.store = s.store "
        f"WHERE {where} {group}ORDER BY " + period.text_order("s.store"),
        [*params, *extra],
    )
    rules = rules_of(tx)
    out: list[dict[str, Any]] = [
        {
            "store": str(store),
            "region": str(region),
            "accounts": int(count),
            "points": int(points or 0),
            "value": money(rules.redemption_value(max(0, int(points or 0)))),
            "expiring_30d": int(x30 or 0),
            "expiring_90d": int(x90 or 0),
        }
        for store, region, count, points, x30, x90 in rows
    ]
    total = sum(row["points"] for row in out)
    totals = {
        "as_of": period.as_of.isoformat(),
        "accounts": sum(row["accounts"] for row in out),
        "points": total,
        "value": money(rules.redemption_value(max(0, total))),
        "expiring_30d": sum(row["expiring_30d"] for row in out),
        "expiring_90d": sum(row["expiring_90d"] for row in out),
    }
    return {"report": "liability", "rows": out, "totals": totals}


def liability_history(tx: Tx, period: Period) -> Report:
    """Points issued, redeemed and expired by month, and what was outstanding at
    each month's end (the liability over time), from the daily sums of
    ``agg_ledger``."""
    upto = (period.as_of + dt.timedelta(days=1)).isoformat()
    rows = tx.all(
        "SELECT substr(day, 1, 7), SUM(issued), SUM(taken), SUM(expired) FROM agg_ledger "
        "WHERE day < ? GROUP BY substr(day, 1, 7) ORDER BY 1",
        (upto,),
    )
    outstanding, out = 0, []
    for month, issued, taken, expired in rows:
        outstanding += int(issued or 0) - int(taken or 0) - int(expired or 0)
        out.append(
            {
                "month": str(month),
                "issued": int(issued or 0),
                "redeemed_or_taken": int(taken or 0),
                "expired": int(expired or 0),
                "outstanding": outstanding,
            }
        )
    return {"report": "liability_history", "rows": out, "totals": {"outstanding": outstanding}}


def rewards(tx: Tx, period: Period) -> Report:
    """Redemptions (points, value; vouchers are redemptions without a sale) and
    gifts (enrolment bonuses and manual credits) by store and month."""
    where, params = period.where()
    rows = tx.all(
        "SELECT store, substr(day, 1, 7), "
        "SUM(CASE WHEN kind = 'redeem' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN kind = 'redeem' THEN points ELSE 0 END), "
        "SUM(CASE WHEN kind = 'redeem' THEN value ELSE 0 END), "
        "SUM(CASE WHEN kind = 'redeem' THEN voucher ELSE 0 END), "
        "SUM(CASE WHEN kind = 'redeem' AND voucher = 1 THEN value ELSE 0 END), "
        "SUM(CASE WHEN kind IN ('bonus', 'adjust') AND points > 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN kind IN ('bonus', 'adjust') AND points > 0 THEN points ELSE 0 END) "
        f"FROM ins_sales WHERE kind IN ('redeem', 'bonus', 'adjust') AND {where} "
        f"GROUP BY store, substr(day, 1, 7) ORDER BY {period.text_order('store')}, 2",
        params,
    )
    keys = ("redemptions", "points", "value", "vouchers", "voucher_value", "gifts", "gift_points")
    out = []
    for store, month, *figures in rows:
        row: dict[str, Any] = {"store": str(store), "month": str(month)}
        row.update({key: int(value or 0) for key, value in zip(keys, figures, strict=True)})
        out.append(row)
    totals = {key: sum(row[key] for row in out) for key in keys}
    for row in [*out, totals]:
        row["value"], row["voucher_value"] = money(row["value"]), money(row["voucher_value"])
    return {"report": "rewards", "rows": out, "totals": totals}


_VISIT = "CASE WHEN kind IN ('earn', 'redeem') THEN device || ':' || receipt END"


def ranking(tx: Tx, period: Period, limit: int | None = None) -> Report:
    """Members by spend (net of refunds) in the period; a visit is a receipt on
    which the member earned or redeemed."""
    where, params = period.where()
    rows = tx.all(
        f"SELECT member, SUM(amount), COUNT(DISTINCT {_VISIT}), "
        "SUM(CASE WHEN kind = 'earn' THEN points ELSE 0 END) FROM ins_sales "
        f"WHERE kind IN ('earn', 'redeem', 'refund') AND {where} GROUP BY member "
        f"ORDER BY SUM(amount) DESC, {period.text_order('member')}",
        params,
    )
    out: list[dict[str, Any]] = [
        {
            "rank": rank,
            "member_id": str(member),
            "spend": money(spend),
            "visits": int(visits),
            "points": int(points or 0),
        }
        for rank, (member, spend, visits, points) in enumerate(rows, start=1)
    ]
    totals = {
        "members": len(out),
        "spend": money(sum(int(row[1] or 0) for row in rows)),
        "visits": sum(row["visits"] for row in out),
    }
    return {"report": "ranking", "rows": out[:limit] if limit else out, "totals": totals}


def _age_band(period: Period) -> str:
    age = f"({period.as_of.year} - m.birth_year)"
    cases = " ".join(f"WHEN {age} < {upper} THEN '{name}'" for upper, name in AGE_BANDS)
    return f"CASE WHEN m.birth_year IS NULL THEN 'unknown' {cases} ELSE '65+' END"


def sales(tx: Tx, period: Period) -> Report:
    """Member sales (net of refunds) by store, region, age band, gender, hour of
    day, weekday (1 = Monday) and category; each dimension adds up to the total."""
    where, params = period.where("s.day", "s.store")
    dimensions = {
        "store": "s.store",
        "region": "COALESCE(r.region, 'unknown')",
        "age_band": _age_band(period),
        "gender": "COALESCE(m.gender, 'unknown')",
        "hour": "CAST(s.hour AS TEXT)",
        "weekday": "CAST(s.weekday AS TEXT)",
    }
    out: list[dict[str, Any]] = []
    for name, key in dimensions.items():
        rows = tx.all(
            f"SELECT {key}, SUM(s.amount), SUM(CASE WHEN s.kind = 'earn' THEN 1 ELSE 0 END), "
            "COUNT(DISTINCT s.member) FROM ins_sales s "
            "LEFT JOIN ins_members m ON m.member_id = s.member "
            "LEFT JOIN ins_stores r ON r.store = s.store "
            f"WHERE s.kind IN ('earn', 'refund') AND {where} GROUP BY {key}",
            params,
        )
        out.extend(_dimension(name, rows))
    rows = tx.all(
        "SELECT s.category, SUM(s.amount), COUNT(DISTINCT CASE WHEN s.qty > 0 THEN "
        "s.device || ':' || s.seq END), COUNT(DISTINCT s.member) FROM ins_lines s "
        f"WHERE {where} GROUP BY s.category",
        params,
    )
    out.extend(_dimension("category", rows))
    total = tx.one(
        "SELECT SUM(amount), SUM(CASE WHEN kind = 'earn' THEN 1 ELSE 0 END), "
        f"COUNT(DISTINCT member) FROM ins_sales s WHERE kind IN ('earn', 'refund') AND {where}",
        params,
    )
    spend, receipts, members = total if total else (0, 0, 0)
    totals = {"spend": money(spend), "receipts": int(receipts or 0), "members": int(members or 0)}
    return {"report": "sales", "rows": out, "totals": totals}


def sales_summary(tx: Tx, period: Period) -> Report:
    """The sales report's spend and receipts by store, hour, weekday and category,
    without its member counts: read from ``agg_sales`` and ``agg_lines``, so the
    reports page costs the same at twenty million entries as at a thousand."""
    where, params = period.where()
    sales, lines = "agg_sales", "agg_lines"
    if covers_members(tx, period.start, None, period.as_of.isoformat()):
        # The whole history: the same sums without the day, a few thousand rows.
        sales, lines = "agg_sales_total", "agg_lines_total"
        where, params = ("store = ?", [period.store]) if period.store else ("1 = 1", [])
    # One pass over the sales' sums, folded here by store, hour and weekday.
    sums: dict[str, dict[str, list[int]]] = {"store": {}, "hour": {}, "weekday": {}}
    for store, hour, weekday, spend, receipts in tx.all(
        f"SELECT store, hour, weekday, SUM(spend), SUM(receipts) FROM {sales} "
        f"WHERE {where} GROUP BY store, hour, weekday",
        params,
    ):
        for name, key in (("store", store), ("hour", hour), ("weekday", weekday)):
            figures = sums[name].setdefault(str(key), [0, 0])
            figures[0] += int(spend or 0)
            figures[1] += int(receipts or 0)
    categories = tx.all(
        f"SELECT category, SUM(spend), SUM(receipts), 0 FROM {lines} WHERE {where} "
        "GROUP BY category",
        params,
    )
    dimensions = {
        **{name: [(key, *figures, 0) for key, figures in keyed.items()]
           for name, keyed in sums.items()},
        "category": [tuple(row) for row in categories],
    }  # fmt: skip
    out = [
        {key: value for key, value in row.items() if key != "members"}
        for name, rows in dimensions.items()
        for row in _dimension(name, rows)
    ]
    spend = sum(figures[0] for figures in sums["hour"].values())
    receipts = sum(figures[1] for figures in sums["hour"].values())
    totals = {"spend": money(spend), "receipts": receipts}
    return {"report": "sales", "rows": out, "totals": totals}


def _dimension(name: str, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    def order(key: str) -> tuple[int, str]:
        return (int(key), "") if key.isdigit() else (0, key)

    return [
        {
            "by": name,
            "key": str(key),
            "spend": money(spend),
            "receipts": int(receipts or 0),
            "members": int(members or 0),
        }
        for key, spend, receipts, members in sorted(rows, key=lambda row: order(str(row[0])))
    ]


def affinity(tx: Tx, period: Period, min_support: float = 0.01) -> Report:
    """Association rules between categories bought on one receipt: pairs, and
    triples whose support clears the same threshold (apriori's pruning in SQL).
    support = share of receipts with all items; confidence = P(consequent |
    antecedent); lift = confidence / support(consequent)."""
    where, params = period.where()
    baskets = f"SELECT DISTINCT device, seq, category FROM ins_lines WHERE qty > 0 AND {where}"
    total_row = tx.one(f"SELECT COUNT(*) FROM (SELECT DISTINCT device, seq FROM ({baskets}) b) t",
                       params)  # fmt: skip
    total = int(total_row[0]) if total_row else 0
    if total == 0:
        return {"report": "affinity", "rows": [], "totals": {"receipts": 0}}
    least = max(1, int(min_support * total + 0.999999))
    single = {
        str(cat): int(n)
        for cat, n in tx.all(
            f"SELECT category, COUNT(*) FROM ({baskets}) b GROUP BY category", params
        )
    }
    lt = period.text_order
    pairs = tx.all(
        f"WITH b AS ({baskets}) SELECT x.category, y.category, COUNT(*) FROM b x JOIN b y "
        f"ON x.device = y.device AND x.seq = y.seq AND {lt('x.category')} < {lt('y.category')} "
        "GROUP BY x.category, y.category HAVING COUNT(*) >= ?",
        [*params, least],
    )
    pair_n = {(str(a), str(b)): int(n) for a, b, n in pairs}
    triples = tx.all(
        f"WITH b AS ({baskets}) SELECT x.category, y.category, z.category, COUNT(*) FROM b x "
        "JOIN b y ON x.device = y.device AND x.seq = y.seq "
        f"AND {lt('x.category')} < {lt('y.category')} "
        "JOIN b z ON z.device = y.device AND z.seq = y.seq "
        f"AND {lt('y.category')} < {lt('z.category')} "
        "GROUP BY x.category, y.category, z.category HAVING COUNT(*) >= ?",
        [*params, least],
    )
    out: list[dict[str, Any]] = []
    for (a, b), n in pair_n.items():
        out.append(_rule((a,), b, n, single[a], single[b], total))
        out.append(_rule((b,), a, n, single[b], single[a], total))
    for a, b, c, count in triples:
        items, n = (str(a), str(b), str(c)), int(count)
        for consequent in items:
            antecedent = tuple(item for item in items if item != consequent)
            base = pair_n.get((antecedent[0], antecedent[1]))
            if base:
                out.append(_rule(antecedent, consequent, n, base, single[consequent], total))
    out.sort(key=lambda row: (-row["lift"], row["antecedent"], row["consequent"]))
    totals = {"receipts": total, "min_support": min_support, "rules": len(out)}
    return {"report": "affinity", "rows": out, "totals": totals}


def _rule(
    antecedent: tuple[str, ...], consequent: str, both: int, ante: int, cons: int, total: int
) -> dict[str, Any]:
    confidence = both / ante
    return {
        "antecedent": "+".join(antecedent),
        "consequent": consequent,
        "receipts": both,
        "support": round(both / total, 6),
        "confidence": round(confidence, 6),
        "lift": round(confidence / (cons / total), 6),
    }
