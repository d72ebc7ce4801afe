"""Report facts derived from the stored journals, so reports are plain SQL.

The journals hold what a report needs (a member's birthday, a line's category,
a sale's hour) inside JSON bodies, and SQLite and PostgreSQL spell JSON
differently. So the facts are read once, in batch order, into ``ins_*`` tables
written in portable SQL; every report is then one aggregation over them that
gives the same numbers on both backends.

The refresh is incremental and idempotent: a cursor (``ins_state``) remembers
the last batch read; batches are numbered in commit order (``sync.hq.ingest``),
so nothing is skipped or read twice. The cursor row is locked first, so two HQ
workers refreshing at once take turns; the tables stay a projection of the
journals and can be dropped and rebuilt at any time (``rebuild``).

Accounts are resolved to members here: an earning on a card not enrolled at
that till books to ``"C" + card`` (``sync.hq.extract``); once an enrolment binds the
card, its rows move to the member.
"""

# ruff: noqa: S608 -- SQL here is built from constant fragments (table and column
# names, CASE rules); every value is bound as a parameter.

from __future__ import annotations

import datetime as dt
import json
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from agent.entries import (
    Adjust,
    Body,
    CardReplace,
    Consent,
    Earn,
    Enrol,
    Kind,
    OfferTake,
    OnAccount,
    Redeem,
    Refund,
    SaleLine,
    readable,
)
from sync.hq.db import HQStore, Tx, in_lists, looked_up
from sync.hq.insight import aggregates
from sync.hq.insight.batches import EntryRow, follow_batches
from sync.hq.member_keys import consent_rows, opened_all

_EPOCH = dt.date(1970, 1, 1)
PAGE = 200  # batches per transaction

_TABLES = (
    "CREATE TABLE IF NOT EXISTS ins_state (id INTEGER PRIMARY KEY, batch_no BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ins_stores (store TEXT PRIMARY KEY, region TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ins_members (member_id TEXT PRIMARY KEY, store TEXT NOT NULL, "
    "enrolled_day TEXT NOT NULL, enrolled_no INTEGER NOT NULL, birth_year INTEGER, "
    "birthday TEXT, gender TEXT, household INTEGER, consent INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ins_cards (account TEXT PRIMARY KEY, member_id TEXT NOT NULL)",
    # One row per earn, redeem, refund, adjust or enrolment bonus: amount is spend
    # (refunds negative), points the entry's points, value a redemption's money value,
    # voucher 1 for a redemption without a sale (points turned into a voucher).
    "CREATE TABLE IF NOT EXISTS ins_sales (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "kind TEXT NOT NULL, member TEXT NOT NULL, store TEXT NOT NULL, day TEXT NOT NULL, "
    "day_no INTEGER NOT NULL, hour INTEGER NOT NULL, weekday INTEGER NOT NULL, "
    "receipt TEXT, amount BIGINT NOT NULL, points BIGINT NOT NULL, value BIGINT NOT NULL, "
    "voucher INTEGER NOT NULL, PRIMARY KEY (device, seq))",
    "CREATE INDEX IF NOT EXISTS ins_sales_member ON ins_sales (member)",
    "CREATE INDEX IF NOT EXISTS ins_sales_day ON ins_sales (day)",
    # A receipt's first earn or redeem is its visit (sync.hq.insight.aggregates).
    "CREATE INDEX IF NOT EXISTS ins_sales_receipt ON ins_sales (device, receipt)",
    # Receipt lines; a refund's lines carry the sold line's category, negative.
    "CREATE TABLE IF NOT EXISTS ins_lines (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "line_no INTEGER NOT NULL, member TEXT NOT NULL, store TEXT NOT NULL, day TEXT NOT NULL, "
    "category TEXT NOT NULL, qty BIGINT NOT NULL, amount BIGINT NOT NULL, "
    "PRIMARY KEY (device, seq, line_no))",
    # Only the rows still booked to a card's account are found by member (the lines
    # an enrolment's card binding moves, ``_apply``): no report looks up a member's
    # lines, and an index of every line by member took random-order inserts across a
    # file of a gigabyte (issue 18). ``ins_lines_member`` was that index.
    "DROP INDEX IF EXISTS ins_lines_member",
    "CREATE INDEX IF NOT EXISTS ins_lines_card ON ins_lines (member) "
    "WHERE member >= 'C' AND member < 'D'",
    "CREATE TABLE IF NOT EXISTS ins_lots (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "member TEXT NOT NULL, day TEXT NOT NULL, points BIGINT NOT NULL, expires_on TEXT NOT NULL, "
    "PRIMARY KEY (device, seq))",
    "CREATE INDEX IF NOT EXISTS ins_lots_member ON ins_lots (member)",
    # The lots whose expiry a day's passing moves out of agg_members' a30 and a90.
    "CREATE INDEX IF NOT EXISTS ins_lots_expiry ON ins_lots (expires_on)",
)
_RESOLVED = ("ins_sales", "ins_lines", "ins_lots")


# The stores this process has made the tables in: each refresh (and each report
# reads one) ran the DDL again, and on PostgreSQL each ``CREATE INDEX IF NOT EXISTS``
# waits for a share lock on its table, behind every other worker's refresh (issue 18).
_READY: weakref.WeakSet[HQStore] = weakref.WeakSet()


def ensure_tables(store: HQStore) -> None:
    if store in _READY:
        return
    with store.write() as tx:
        for statement in _TABLES:
            tx.run(statement)
        tx.run("INSERT INTO ins_state (id, batch_no) VALUES (1, 0) ON CONFLICT DO NOTHING")
    _READY.add(store)


def set_stores(store: HQStore, regions: Iterable[tuple[str, str]]) -> None:
    """Master data HQ cannot learn from journals: which region a store is in."""
    ensure_tables(store)
    with store.write() as tx:
        tx.many(
            "INSERT INTO ins_stores (store, region) VALUES (?, ?) "
            "ON CONFLICT (store) DO UPDATE SET region = excluded.region",
            list(regions),
        )


def utc_offset(tx: Tx) -> dt.timedelta:
    """The chain's local time for hours and weekdays (``hq_meta``
    ``insight_utc_offset_minutes``; UTC if unset)."""
    row = tx.one("SELECT value FROM hq_meta WHERE key = 'insight_utc_offset_minutes'")
    return dt.timedelta(minutes=int(row[0]) if row else 0)


FACT_KINDS = (
    Kind.ENROL,
    Kind.CARD_REPLACE,
    Kind.EARN,
    Kind.REDEEM,
    Kind.REFUND,
    Kind.ADJUST,
    Kind.OFFER_TAKE,
    Kind.CONSENT,
)


def refresh(store: HQStore, page: int = PAGE, known: Known | None = None, wait: bool = True) -> int:
    """Read every batch stored since the last refresh, and add its sums to the
    aggregates in the same transaction; returns entries read. ``page``: batches per
    transaction, fewer past ``batches.PAGE_ENTRIES`` entries (each page's entries
    are held in memory together). ``known``: typed
    bodies of stored entries by ``(device, seq)``, which the caller built and so
    need not be read back from their JSON (``hq simulate``'s workers); any entry
    not in it is read from its stored body. ``wait=False``: if another refresh holds
    the cursor, return at once (it, or the next refresh, reads these batches); on
    PostgreSQL only, where SQLite's writers queue for the whole file anyway."""
    ensure_tables(store)
    with store.write() as tx:
        if tx.locked("SELECT batch_no FROM ins_state WHERE id = 1", skip=not wait) is None:
            return 0
        aggregates.ensure_built(tx)

    bound: list[str] = []  # the card accounts the page being read binds

    def apply(tx: Tx, rows: list[EntryRow]) -> int:
        bound[:] = _apply(tx, rows, known or {})
        return len(rows)

    def then(tx: Tx, span: tuple[int, int]) -> None:
        aggregates.add(tx, span, bound)

    return follow_batches(store, "ins_state", FACT_KINDS, apply, page, then, wait)


def rebuild(store: HQStore) -> int:
    ensure_tables(store)
    with store.write() as tx:
        for table in ("ins_members", "ins_cards", *_RESOLVED):
            tx.run(f"DELETE FROM {table}")
        tx.run("UPDATE ins_state SET batch_no = 0 WHERE id = 1")
        aggregates.rebuild_in(tx)
    return refresh(store)


def day_no(day: str) -> int:
    return (dt.date.fromisoformat(day) - _EPOCH).days


class _Page:
    """The rows one page of entries adds, with the card owners it needs."""

    def __init__(self, tx: Tx) -> None:
        self.tx, self.offset = tx, utc_offset(tx)
        self.members: list[tuple[Any, ...]] = []
        self.cards: dict[str, str] = {}
        self.new_cards: list[tuple[str, str]] = []
        self.sales: list[tuple[Any, ...]] = []
        self.lines: list[tuple[Any, ...]] = []
        self.lots: list[tuple[Any, ...]] = []
        self.sold: dict[tuple[str, str], tuple[SaleLine, ...]] = {}

    def owner(self, account: str) -> str:
        return self.cards.get(account, account)

    def bind(self, card: str, member_id: str) -> None:
        if "C" + card not in self.cards:
            self.cards["C" + card] = member_id
            self.new_cards.append(("C" + card, member_id))

    def load_owners(self, accounts: set[str]) -> None:
        wanted = sorted(accounts - set(self.cards))
        sql = "SELECT account, member_id FROM ins_cards WHERE account IN ({})"
        for account, member_id in looked_up(self.tx, sql, wanted):
            self.cards[str(account)] = str(member_id)


# A page's entry: (device, seq, ts, typed body, home store of the device).
_Row = tuple[str, int, str, Body, str]
# Typed bodies of stored entries by (device, seq): see ``refresh``.
Known = Mapping[tuple[str, int], Body]


def _typed(rows: list[tuple[Any, ...]], known: Known) -> list[_Row]:
    """The page's entries with typed bodies; one no till writes is left out."""
    typed: list[_Row] = []
    for device, seq, ts, kind, text, store in rows:
        body = known.get((device, seq)) or readable(str(kind), json.loads(str(text)))
        if body is not None:
            typed.append((str(device), int(seq), str(ts), body, str(store)))
    return typed


def _apply(tx: Tx, rows: list[tuple[Any, ...]], known: Known) -> list[str]:
    """Add the page's facts; returns the card accounts it binds to members."""
    page = _Page(tx)
    parsed = _typed(rows, known)
    enrolled: list[tuple[str, int, Enrol]] = []
    consents: list[tuple[str, int, str]] = []
    for device, seq, ts, body, _ in parsed:
        if isinstance(body, Enrol):
            enrolled.append((device, seq, body))
            page.bind(body.card, body.member.member_id)
        elif isinstance(body, CardReplace):
            page.bind(body.card, body.member_id)
        elif isinstance(body, Consent):
            consents.append((body.member_id, body.marketing, ts))
    _enrol(page, enrolled)
    page.load_owners(
        {
            body.account
            for _, _, _, body, _ in parsed
            if isinstance(body, OnAccount) and body.account.startswith("C")
        }
    )
    for device, seq, ts, body, store in parsed:
        if isinstance(body, OfferTake):
            _offer_lot(page, device, seq, body)
        elif isinstance(body, Earn | Redeem | Refund | Adjust):
            _sale(page, device, seq, ts, body, store)
    # A member's personal fields (birthday, gender, household) row by row: they
    # never pass through ``Tx.add_new``'s staging table, which an erasure would not clean.
    tx.many(
        "INSERT INTO ins_members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        page.members,
    )
    # The latest consent counts: a counter's after the members it names (issue 17).
    tx.many("UPDATE ins_members SET consent = ? WHERE member_id = ?", consent_rows(tx, consents))
    tx.add_new("ins_cards", page.new_cards)
    tx.add_new("ins_sales", page.sales)
    tx.add_new("ins_lines", page.lines)
    tx.add_new("ins_lots", page.lots)
    # Rows of earlier pages that earned on a card this page bound to a member: found
    # by the page's cards, not by a walk of every card row still unbound, which grows
    # with the chain's anonymous cards (issue 18). The range is ``ins_lines_card``'s,
    # spelled out so that both planners may use that partial index.
    bound = sorted({account for account, _ in page.new_cards})
    for table in _RESOLVED:
        for marks, chunk in in_lists(bound):
            tx.run(
                f"UPDATE {table} SET member = (SELECT c.member_id FROM ins_cards c "
                f"WHERE c.account = {table}.member) WHERE member >= 'C' AND member < 'D' "
                f"AND member IN ({marks})",
                chunk,
            )
    return bound


def _enrol(page: _Page, enrolled: list[tuple[str, int, Enrol]]) -> None:
    """The page's enrolments: their members, with the personal fields from the seal
    while HQ holds the member's key (none once erased) and HQ's own consent
    decision, if any, over the enrolment's; their bonus lots and sales."""
    members = opened_all(page.tx, [body.member for _, _, body in enrolled])
    consent = consent_rows(
        page.tx, [(member.member_id, member.consent_marketing, "") for member in members]
    )
    for (device, seq, body), member, (marketing, _) in zip(enrolled, members, consent, strict=True):
        born = member.birthday if member.birthday and len(member.birthday) == 10 else None
        day = body.day
        page.members.append(
            (
                member.member_id,
                member.enrolled_store,
                day,
                day_no(day),
                int(born[:4]) if born else None,
                born[5:] if born else None,
                member.gender,
                member.household,
                marketing,
            )
        )
        if body.lot is not None and body.bonus:
            page.lots.append((device, seq, member.member_id, day, body.bonus, body.lot.expires_on))
            page.sales.append(
                (device, seq, "bonus", member.member_id, member.enrolled_store, day,
                 day_no(day), 0, 0, None, 0, body.bonus, 0, 0)
            )  # fmt: skip


def _offer_lot(page: _Page, device: str, seq: int, body: OfferTake) -> None:
    """A multiplier offer's bonus is a points lot like an earn's (it expires on its
    own date), so the liability report must not count it as expiring now. It is not
    a sale: no spend, no visit, so no ``ins_sales`` row (vouchers and gifts add
    nothing here; ``cmp_takes`` has them)."""
    if body.points > 0 and body.lot is not None:
        member = page.owner(body.account)
        page.lots.append((device, seq, member, body.day, body.points, body.lot.expires_on))


def _sale(
    page: _Page, device: str, seq: int, ts: str, body: Earn | Redeem | Refund | Adjust, store: str
) -> None:
    member = page.owner(body.account)
    day = body.day
    local = dt.datetime.fromisoformat(ts) + page.offset
    receipt = None if isinstance(body, Adjust) else body.receipt
    points, amount, value, voucher = 0, 0, 0, 0
    if isinstance(body, Earn):
        amount, points = body.amount, body.points
        page.sold[(device, body.receipt)] = body.lines
        for number, line in enumerate(body.lines):
            page.lines.append(
                (device, seq, number, member, store, day, line.category, line.qty, line.amount)
            )
        if points > 0:
            page.lots.append((device, seq, member, day, points, body.lot.expires_on))
    elif isinstance(body, Redeem):
        points, value, voucher = body.points, body.value, int(body.amount is None)
    elif isinstance(body, Refund):
        amount = -body.amount
        points = (body.effects or {}).get("delta", 0)
        sold = _sold_lines(page, device, body.receipt)
        for refunded in body.lines:
            number = refunded.line_no
            category = sold[number].category if number < len(sold) else "?"
            page.lines.append(
                (device, seq, number, member, store, day, category, -refunded.qty,
                 -refunded.amount)
            )  # fmt: skip
    else:
        points = body.points
    page.sales.append(
        (device, seq, body.kind, member, store, day, day_no(day), local.hour, local.isoweekday(),
         receipt, amount, points, value, voucher)
    )  # fmt: skip


def _sold_lines(page: _Page, device: str, receipt: str) -> tuple[SaleLine, ...]:
    if (device, receipt) in page.sold:
        return page.sold[(device, receipt)]
    row = page.tx.one(
        "SELECT body FROM entries WHERE device = ? AND seq = (SELECT seq FROM ins_sales "
        "WHERE device = ? AND receipt = ? AND kind = 'earn')",
        (device, device, receipt),
    )
    earn = readable(Kind.EARN, json.loads(str(row[0]))) if row else None
    return earn.lines if isinstance(earn, Earn) else ()
