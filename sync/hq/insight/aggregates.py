"""Incremental aggregates: what the reports page and the member reports read
instead of scanning twenty million facts (issue 18).

The ``agg_*`` tables (HQ migration ``011_aggregates``) hold sums that only ever
grow by addition, so each page of batches the facts refresh reads
(``sync.hq.insight.facts``) adds its own rows' sums, in the same transaction
that moves the cursor: ``add`` with the page's batch range. ``rebuild`` runs the
very same statements over every fact at once, so a rebuilt table and one kept up
to date page by page are the same numbers (tests/test_insight_aggregates.py
checks both against a full recompute).

- ``agg_sales``: member spend (net of refunds) and receipts by store, day, hour
  and weekday; ``agg_lines``: line spend and receipts by store, day and category.
  Both answer any ``--from``/``--to``/``--store`` period exactly.
- ``agg_ledger``: points issued, taken and expired by day (the liability history).
- ``agg_members``: one row per account, as ``hq balance`` resolves accounts (a
  card's ``C`` account folds into its member once an enrolment binds the card):
  points, the first store it was seen at, earns, first and last earn day, visits
  and spend. A visit is counted once, at the receipt's first earn or redeem, so
  the count stays exact whichever page the receipt's entries arrive in. These
  answer the reports of the whole history as of its newest day (``covers``).
  ``home`` is the enrolment's store (NULL for a card no enrolment names), so the
  reports read no join with ``ins_members``.
- ``agg_liability`` (migration ``012_report_aggregates``): the liability by store
  (accounts, points, and what expires within 30 and 90 days), so the reports page
  reads a row per store, not a million members. ``max(0, points - a30)`` is not a
  sum, so each member row records what it is counted as (``c_*``) and a row any
  statement moves is marked ``dirty``; the end of each ``add`` takes the dirty rows
  out as counted and puts them back as they are now (``_count``).
"""

# ruff: noqa: S608 -- SQL here is built from constant fragments (table and column
# names); every value is bound as a parameter.

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sync.hq.db import HQStore, Tx, in_lists
from sync.hq.insight.batches import batches_in, device_ranges, in_ranges

Span = tuple[int, int]  # (after batch, up to batch)

_MAX = "CASE WHEN {old} IS NULL OR {new} > {old} THEN {new} ELSE {old} END"
_MIN = "CASE WHEN {old} IS NULL OR {new} < {old} THEN {new} ELSE {old} END"


def _keep(column: str, rule: str) -> str:
    """``column = rule(old, new)``, keeping the old value when the new one is NULL."""
    old, new = f"agg_members.{column}", f"excluded.{column}"
    return f"{column} = CASE WHEN {new} IS NULL THEN {old} ELSE {rule.format(old=old, new=new)} END"


def _add(*columns: str) -> str:
    return ", ".join(f"{c} = {{table}}.{c} + excluded.{c}" for c in columns)


_MEMBER_MERGE = ", ".join(
    [
        _keep("seen", _MIN),
        _add("points", "entries", "earns", "visits", "monetary").format(table="agg_members"),
        _keep("last_no", _MAX),
        _keep("first_no", _MIN),
        _add("a30", "a90").format(table="agg_members"),
        "dirty = 1",
    ]
)
_MEMBER_COLUMNS = (
    "member, seen, points, entries, earns, last_no, first_no, visits, monetary, a30, a90"
)


class _Scope:
    """What picks the facts and entries of the batches in a span: past the first
    batch, each device's range of seqs (``batches.device_ranges``); from the first
    batch on, every fact row (facts are only written by the refresh that moves the
    cursor, so a rebuild reads each table once)."""

    def __init__(self, tx: Tx, span: Span) -> None:
        self.span = span
        self.ranges = device_ranges(batches_in(tx, span)) if span[0] > 0 else []

    def facts(self, alias: str) -> tuple[str, list[Any]]:
        """The condition on ``alias``'s rows, and its parameters."""
        if self.span[0] == 0:
            return "1 = 1", []
        return in_ranges(alias, self.ranges)

    def entries(self) -> tuple[str, str, list[Any]]:
        """The join and the condition for ``entries`` (alias ``e``), and their
        parameters. ``entries`` holds batches the refresh has not read yet: from the
        first batch on, a device's entries up to its last batch in the span."""
        if self.span[0] > 0:
            return "", *self.facts("e")
        join = (
            " JOIN (SELECT device, MAX(last_seq) AS upto FROM batches WHERE batch_no <= ? "
            "GROUP BY device) b ON e.device = b.device AND e.seq <= b.upto"
        )
        return join, "1 = 1", [self.span[1]]


# agg_sales' and agg_lines' keys; their ``_total`` tables are the same without the day.
_SALE_KEYS = ("store", "day", "hour", "weekday")
_LINE_KEYS = ("store", "day", "category")


def add(tx: Tx, span: Span, bound: Sequence[str] | None = None) -> None:
    """Add the sums of the facts of ``span`` (read already by the facts refresh in
    this transaction) to the aggregates. ``bound``: the card accounts the span's
    enrolments and replacements bound to members (None: any card account)."""
    scope = _Scope(tx, span)
    cond, params = scope.facts("s")
    receipts = "SUM(CASE WHEN s.kind = 'earn' THEN 1 ELSE 0 END)"
    lines = "COUNT(DISTINCT CASE WHEN s.qty > 0 THEN s.device || ':' || s.seq END)"
    for table, keys, source, counted in (
        ("agg_sales", _SALE_KEYS, "ins_sales", receipts),
        ("agg_sales_total", _SALE_KEYS[:1] + _SALE_KEYS[2:], "ins_sales", receipts),
        ("agg_lines", _LINE_KEYS, "ins_lines", lines),
        ("agg_lines_total", _LINE_KEYS[:1] + _LINE_KEYS[2:], "ins_lines", lines),
    ):
        kinds = "s.kind IN ('earn', 'refund') AND " if source == "ins_sales" else ""
        picked = ", ".join(f"s.{key}" for key in keys)
        tx.run(
            f"INSERT INTO {table} ({', '.join(keys)}, spend, receipts) "
            f"SELECT {picked}, SUM(s.amount), {counted} FROM {source} s "
            f"WHERE {kinds}{cond} GROUP BY {picked} ON CONFLICT ({', '.join(keys)}) "
            "DO UPDATE SET " + _add("spend", "receipts").format(table=table),
            params,
        )
    entry_join, entry_cond, entry_params = scope.entries()
    tx.run(
        "INSERT INTO agg_ledger (day, issued, taken, expired) "
        "SELECT substr(e.ts, 1, 10), SUM(CASE WHEN e.delta > 0 THEN e.delta ELSE 0 END), "
        "SUM(CASE WHEN e.delta < 0 THEN -e.delta ELSE 0 END), SUM(e.expired) "
        f"FROM entries e{entry_join} WHERE e.account IS NOT NULL AND {entry_cond} "
        "GROUP BY substr(e.ts, 1, 10) ON CONFLICT (day) DO UPDATE SET "
        + _add("issued", "taken", "expired").format(table="agg_ledger"),
        entry_params,
    )
    state = tx.one("SELECT expiry_day, lots_day FROM agg_state WHERE id = 1")
    _members(tx, scope, str(state[0]) if state and state[0] is not None else None)
    _lots(tx, scope, state)
    _fold_cards(tx, bound)
    _count(tx)


# An entry's account as its member: a card's ``C`` account an enrolment has bound is
# looked up, row by row; every other account is its own. Joined instead, PostgreSQL
# hashed the whole of ``ins_cards`` for each page (its estimate of a page's entries
# is several times too many): a scan of every member's card, 12-33 ms a page at
# 100,000 members (issue 18).
_OWNER = (
    "CASE WHEN e.account >= 'C' AND e.account < 'D' THEN COALESCE((SELECT c.member_id "
    "FROM ins_cards c WHERE c.account = e.account), e.account) ELSE e.account END"
)


def _members(tx: Tx, scope: _Scope, expiry_day: str | None) -> None:
    """The span's sums by member in ``agg_members``: of its accounts' entries
    (points, entries, the first store seen), of its sales (earns, their first and
    last day, visits, spend) and, once expiry is counted from ``expiry_day``, of its
    lots (the points that expire more than 30 and 90 days after it). The three are
    one row per member, upserted once: ``_MEMBER_MERGE`` takes minimums, maximums
    and sums, so the sources summed first give the row each upsert in turn gave
    (issue 18: three upserts of the same rows were two fifths of a page's sums)."""
    cond, params = scope.facts("s")
    entry_join, entry_cond, entry_params = scope.entries()
    # "+o.seq": not an index column for SQLite's planner, which otherwise walks every
    # earlier sale of the device by the primary key (device, seq) instead of finding
    # the receipt by ins_sales_receipt: quadratic in a device's history (issue 18).
    first_visit = (
        "s.kind IN ('earn', 'redeem') AND s.receipt IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM ins_sales o WHERE o.device = s.device AND o.receipt = s.receipt "
        "AND o.member = s.member AND o.kind IN ('earn', 'redeem') AND +o.seq < s.seq)"
    )
    earned = "CASE WHEN s.kind = 'earn' THEN {} ELSE {} END"
    sources = [
        f"SELECT {_OWNER} AS member, d.store AS seen, "
        "e.delta - e.expired AS points, 1 AS entries, 0 AS earns, "
        "CAST(NULL AS INTEGER) AS last_no, CAST(NULL AS INTEGER) AS first_no, 0 AS visits, "
        "0 AS monetary, 0 AS a30, 0 AS a90 "
        f"FROM entries e{entry_join} JOIN devices d ON d.device = e.device "
        f"WHERE e.account IS NOT NULL AND {entry_cond}",
        f"SELECT s.member, NULL, 0, 0, {earned.format(1, 0)}, "
        f"{earned.format('s.day_no', 'NULL')}, {earned.format('s.day_no', 'NULL')}, "
        f"CASE WHEN {first_visit} THEN 1 ELSE 0 END, s.amount, 0, 0 FROM ins_sales s "
        f"WHERE s.kind IN ('earn', 'redeem', 'refund') AND {cond}",
    ]
    values = [*entry_params, *params]
    if expiry_day is not None:
        sources.append(
            "SELECT s.member, NULL, 0, 0, 0, NULL, NULL, 0, 0, "
            "CASE WHEN s.expires_on > ? THEN s.points ELSE 0 END, "
            f"CASE WHEN s.expires_on > ? THEN s.points ELSE 0 END FROM ins_lots s "
            f"WHERE {cond}"
        )
        values += [_after(expiry_day, 30), _after(expiry_day, 90), *params]
    tx.run(
        f"INSERT INTO agg_members ({_MEMBER_COLUMNS}) "
        "SELECT member, MIN(seen), SUM(points), SUM(entries), SUM(earns), MAX(last_no), "
        "MIN(first_no), SUM(visits), SUM(monetary), SUM(a30), SUM(a90) "
        f"FROM ({' UNION ALL '.join(sources)}) page GROUP BY member "
        f"ON CONFLICT (member) DO UPDATE SET {_MEMBER_MERGE}",
        values,
    )


def _later(tx: Tx, days: tuple[str, str]) -> None:
    """Set every member's a30 and a90 from all lots: the points of lots that expire
    after ``days`` (30 and 90 days after the day expiry is first counted from)."""
    tx.run(
        f"INSERT INTO agg_members ({_MEMBER_COLUMNS}) SELECT s.member, CAST(NULL AS TEXT), 0, 0, "
        "0, CAST(NULL AS INTEGER), CAST(NULL AS INTEGER), 0, 0, "
        "SUM(CASE WHEN s.expires_on > ? THEN s.points ELSE 0 END), "
        "SUM(CASE WHEN s.expires_on > ? THEN s.points ELSE 0 END) FROM ins_lots s "
        "GROUP BY s.member ON CONFLICT (member) DO UPDATE SET "
        "a30 = excluded.a30, a90 = excluded.a90, dirty = 1",
        days,
    )


def _after(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def _lots(tx: Tx, scope: _Scope, state: tuple[Any, ...] | None) -> None:
    """Keep a30 and a90 (the member's lot points that expire more than 30 and 90
    days after ``expiry_day``, the newest sale's day, which liability reads as
    ``max(0, points - a30)``): the span's lots were added (``_members``, from
    ``state``, ``agg_state``'s row before the span); when the newest day moves on,
    the lots whose expiry it passes are taken out, a day's worth of lots by index,
    not a scan of all."""
    cond, params = scope.facts("s")
    day, lots_day = (state[0], state[1]) if state else (None, None)
    newest = tx.one(f"SELECT MAX(s.day) FROM ins_lots s WHERE {cond}", params)
    if newest and newest[0] and (lots_day is None or str(newest[0]) > str(lots_day)):
        lots_day = str(newest[0])
    row = tx.one("SELECT MAX(day) FROM ins_sales")
    moved = str(row[0]) if row and row[0] else None
    if moved is None:
        tx.run("UPDATE agg_state SET lots_day = ? WHERE id = 1", (lots_day,))
        return
    if day is None:
        _later(tx, (_after(moved, 30), _after(moved, 90)))
    elif moved > day:
        for days in (30, 90):
            # Lots expiring in (day + days, moved + days] no longer count as later.
            passed = (_after(day, days), _after(moved, days))
            column = f"a{days}"
            tx.run(
                f"INSERT INTO agg_members ({_MEMBER_COLUMNS}) SELECT s.member, "
                "CAST(NULL AS TEXT), 0, 0, 0, CAST(NULL AS INTEGER), CAST(NULL AS INTEGER), 0, 0, "
                f"{'-SUM(s.points)' if days == 30 else '0'}, "
                f"{'-SUM(s.points)' if days == 90 else '0'} FROM ins_lots s "
                "WHERE s.expires_on > ? AND s.expires_on <= ? GROUP BY s.member "
                f"ON CONFLICT (member) DO UPDATE SET {column} = agg_members.{column} + "
                f"excluded.{column}, dirty = 1",
                passed,
            )
    tx.run(
        "UPDATE agg_state SET expiry_day = ?, lots_day = ? WHERE id = 1",
        (max(moved, day or moved), lots_day),
    )


def _fold_cards(tx: Tx, bound: Sequence[str] | None) -> None:
    """A card's ``C`` account that an enrolment has since bound: its row folds into
    its member's (as ``facts`` moves the card's facts to the member). Only the cards
    in ``bound`` can have such a row: the span's own entries on them were booked to
    the member already (``_OWNER``). Most pages' cards have none, and then nothing
    more is done (issue 18: the fold was eight statements a page, each a walk of
    every card row)."""
    cards = "agg_members.member >= 'C' AND agg_members.member < 'D'"
    if bound is None:
        _fold(tx, cards, [])
        return
    for marks, chunk in in_lists(bound):
        rows = tx.all(
            f"SELECT member FROM agg_members WHERE {cards} AND member IN ({marks})", chunk
        )
        held = [row[0] for row in rows]
        if held:
            _fold(tx, f"{cards} AND agg_members.member IN ({', '.join('?' * len(held))})", held)


def _fold(tx: Tx, cards: str, params: Sequence[Any]) -> None:
    """Fold the card rows of ``agg_members`` that ``cards`` picks and an enrolment has
    bound into their members' rows."""
    # CROSS JOIN: SQLite walks the picked card rows of agg_members and looks each up
    # in ins_cards, not every bound card (every member's) into agg_members: a page's
    # cost must not grow with the chain (issue 18). PostgreSQL plans it as a join.
    tx.run(
        f"INSERT INTO agg_members ({_MEMBER_COLUMNS}) "
        "SELECT c.member_id, MIN(seen), SUM(points), SUM(entries), SUM(earns), "
        "MAX(last_no), MIN(first_no), SUM(visits), SUM(monetary), SUM(a30), SUM(a90) "
        f"FROM agg_members CROSS JOIN ins_cards c WHERE c.account = agg_members.member "
        f"AND {cards} GROUP BY c.member_id ON CONFLICT (member) DO UPDATE SET {_MEMBER_MERGE}",
        params,
    )
    folded = f"{cards} AND EXISTS (SELECT 1 FROM ins_cards c WHERE c.account = agg_members.member)"
    _uncount(tx, folded, params)
    tx.run(f"DELETE FROM agg_members WHERE {folded}", params)


# The tables that count member rows: (table, its keys, the member row's ``c_*``
# columns it is counted under (NULL: not counted), the sums, what a row adds to each).
_COUNTED = (
    ("agg_liability", ("store",), ("c_store",), ("accounts", "points", "x30", "x90"),
     ("1", "c_points", "c_x30", "c_x90")),
    ("agg_recency", ("last_no", "visits"), ("c_last", "c_visits"), ("members",), ("1",)),
    ("agg_spend", ("monetary",), ("c_monetary",), ("members",), ("1",)),
)  # fmt: skip
# What a member row is counted as: in the liability under its home store (else the
# first store it was seen at) if it has entries; in the segment sizes' histograms if
# it is an enrolled member who earned. A row older than its enrolment takes its home
# store when it is counted.
_HOME = "COALESCE(home, (SELECT m.store FROM ins_members m WHERE m.member_id = agg_members.member))"
_SEGMENTED = f"CASE WHEN {_HOME} IS NOT NULL AND earns > 0 THEN {{}} END"
_COUNT_AS = (
    ("home", _HOME),
    ("c_store", f"CASE WHEN entries > 0 THEN COALESCE({_HOME}, seen) END"),
    ("c_points", "points"),
    ("c_x30", "CASE WHEN points > a30 THEN points - a30 ELSE 0 END"),
    ("c_x90", "CASE WHEN points > a90 THEN points - a90 ELSE 0 END"),
    ("c_last", _SEGMENTED.format("last_no")),
    ("c_visits", _SEGMENTED.format("visits")),
    ("c_monetary", _SEGMENTED.format("monetary")),
)
# The dirty rows as they are counted now, under the ``c_*`` columns' own names.
_NOW = (
    "(SELECT "
    + ", ".join(f"{expression} AS {column}" for column, expression in _COUNT_AS)
    + " FROM agg_members WHERE dirty = 1) now"
)


def _counted(source: str, sign: str, counted: tuple[str, ...], values: tuple[str, ...]) -> str:
    """A counting table's key and what a row adds, for each counted row of ``source``."""
    keys = ", ".join(f"{column} AS k{n}" for n, column in enumerate(counted))
    added = ", ".join(f"{sign}{value} AS v{n}" for n, value in enumerate(values))
    return f"SELECT {keys}, {added} FROM {source} WHERE {counted[0]} IS NOT NULL"


def _into(table: str, keys: tuple[str, ...], sums: tuple[str, ...], rows: str) -> str:
    """Add ``rows`` (keys ``k*``, values ``v*``) into the counting table ``table``."""
    picked = ", ".join(f"k{n}" for n in range(len(keys)))
    summed = ", ".join(f"SUM(v{n})" for n in range(len(sums)))
    return (
        f"INSERT INTO {table} ({', '.join(keys + sums)}) SELECT {picked}, {summed} "
        f"FROM ({rows}) counted GROUP BY {picked} ON CONFLICT ({', '.join(keys)}) "
        "DO UPDATE SET " + _add(*sums).format(table=table)
    )


def _uncount(tx: Tx, where: str, params: Sequence[Any] = ()) -> None:
    """Take the member rows ``where`` picks out of the counting tables, as counted
    (their ``c_*`` columns)."""
    for table, keys, counted, sums, values in _COUNTED:
        rows = _counted("agg_members", "-", counted, values) + f" AND {where}"
        tx.run(_into(table, keys, sums, rows), params)
        tx.run(f"DELETE FROM {table} WHERE {sums[0]} = 0")


def _count(tx: Tx) -> None:
    """Recount the member rows this refresh moved (``dirty``) in the counting tables
    (``_COUNTED``): out as they were counted and in as they are counted now, one
    statement a table; then the rows are set to what they are now counted as. A row
    whose member's enrolment arrived since (it may be older than the enrolment) is
    dirty too."""
    # EXISTS, not IN: the rows without a home (agg_members_homeless) are looked up in
    # ins_members, not every member into agg_members (issue 18).
    tx.run(
        "UPDATE agg_members SET dirty = 1 WHERE home IS NULL AND EXISTS "
        "(SELECT 1 FROM ins_members m WHERE m.member_id = agg_members.member)"
    )
    # Out and in together, and the rows written once (issue 18): taken out, settled,
    # put in and marked clean, each dirty row was written twice (on PostgreSQL, two
    # new row versions and their index entries) and each table upserted twice a page.
    for table, keys, counted, sums, values in _COUNTED:
        moved = (
            _counted("agg_members", "-", counted, values)
            + " AND dirty = 1 UNION ALL "
            + _counted(_NOW, "", counted, values)
        )
        tx.run(_into(table, keys, sums, moved))
        tx.run(f"DELETE FROM {table} WHERE {sums[0]} = 0")
    settled = ", ".join(f"{column} = {expression}" for column, expression in _COUNT_AS)
    tx.run(f"UPDATE agg_members SET {settled}, dirty = 0 WHERE dirty = 1")


AGGREGATE_TABLES = (
    "agg_sales",
    "agg_lines",
    "agg_ledger",
    "agg_members",
    "agg_liability",
    "agg_recency",
    "agg_spend",
    "agg_sales_total",
    "agg_lines_total",
)


def rebuild_in(tx: Tx) -> None:
    """Every aggregate anew from the facts of every batch the facts refresh has
    read (its cursor), by the statements each page runs."""
    for table in AGGREGATE_TABLES:
        tx.run(f"DELETE FROM {table}")
    tx.run("UPDATE agg_state SET expiry_day = NULL, lots_day = NULL WHERE id = 1")
    row = tx.one("SELECT batch_no FROM ins_state WHERE id = 1")
    add(tx, (0, int(row[0]) if row else 0))
    tx.run("UPDATE agg_state SET built = 1 WHERE id = 1")


def rebuild(store: HQStore) -> None:
    with store.write() as tx:
        tx.locked("SELECT batch_no FROM ins_state WHERE id = 1")
        rebuild_in(tx)


def ensure_built(tx: Tx) -> None:
    """An HQ that stored facts before ``011_aggregates`` builds its aggregates once,
    from the facts it has, before reading on (the caller holds the cursor lock)."""
    row = tx.one("SELECT built FROM agg_state WHERE id = 1")
    if row is not None and not int(row[0]):
        rebuild_in(tx)
    elif tx.one("SELECT 1 FROM agg_members WHERE dirty = 1 LIMIT 1"):
        # Rows ``012_report_aggregates`` found (all dirty) are counted before a read.
        _count(tx)


def newest_day(tx: Tx) -> str | None:
    """The newest day of any stored entry with an account (ledger days are UTC)."""
    row = tx.one("SELECT MAX(day) FROM agg_ledger")
    return str(row[0]) if row and row[0] else None


def expiry_covers(tx: Tx, as_of: str) -> bool:
    """Whether a30 and a90 are counted from ``as_of`` and no lot is newer."""
    row = tx.one("SELECT expiry_day, lots_day FROM agg_state WHERE id = 1")
    if row is None or row[0] != as_of:
        return False
    return row[1] is None or str(row[1]) <= as_of


def covers_members(tx: Tx, start: str | None, store: str | None, as_of: str) -> bool:
    """Whether ``agg_members`` answers a report of this period: the whole history,
    every store, as of a day no sale is after."""
    if start is not None or store is not None:
        return False
    row = tx.one("SELECT MAX(day) FROM ins_sales")
    return row is None or row[0] is None or str(row[0]) <= as_of
