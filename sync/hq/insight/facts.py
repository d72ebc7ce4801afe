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
from collections.abc import Iterable
from typing import Any

from agent.entries import Kind
from sync.hq.db import HQStore, Tx
from sync.hq.insight.batches import EntryRow, follow_batches

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
    # Receipt lines; a refund's lines carry the sold line's category, negative.
    "CREATE TABLE IF NOT EXISTS ins_lines (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "line_no INTEGER NOT NULL, member TEXT NOT NULL, store TEXT NOT NULL, day TEXT NOT NULL, "
    "category TEXT NOT NULL, qty BIGINT NOT NULL, amount BIGINT NOT NULL, "
    "PRIMARY KEY (device, seq, line_no))",
    "CREATE INDEX IF NOT EXISTS ins_lines_member ON ins_lines (member)",
    "CREATE TABLE IF NOT EXISTS ins_lots (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "member TEXT NOT NULL, day TEXT NOT NULL, points BIGINT NOT NULL, expires_on TEXT NOT NULL, "
    "PRIMARY KEY (device, seq))",
    "CREATE INDEX IF NOT EXISTS ins_lots_member ON ins_lots (member)",
)
_RESOLVED = ("ins_sales", "ins_lines", "ins_lots")


def ensure_tables(store: HQStore) -> None:
    with store.write() as tx:
        for statement in _TABLES:
            tx.run(statement)
        tx.run("INSERT INTO ins_state (id, batch_no) VALUES (1, 0) ON CONFLICT DO NOTHING")


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
)


def refresh(store: HQStore) -> int:
    """Read every batch stored since the last refresh; returns entries read."""
    ensure_tables(store)

    def apply(tx: Tx, rows: list[EntryRow]) -> int:
        _apply(tx, rows)
        return len(rows)

    return follow_batches(store, "ins_state", FACT_KINDS, apply, PAGE)


def rebuild(store: HQStore) -> int:
    ensure_tables(store)
    with store.write() as tx:
        for table in ("ins_members", "ins_cards", *_RESOLVED):
            tx.run(f"DELETE FROM {table}")
        tx.run("UPDATE ins_state SET batch_no = 0 WHERE id = 1")
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
        self.sold: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def owner(self, account: str) -> str:
        return self.cards.get(account, account)

    def bind(self, card: Any, member_id: str) -> None:
        if isinstance(card, str) and "C" + card not in self.cards:
            self.cards["C" + card] = member_id
            self.new_cards.append(("C" + card, member_id))

    def load_owners(self, accounts: set[str]) -> None:
        wanted = sorted(accounts - set(self.cards))
        for first in range(0, len(wanted), 500):
            chunk = wanted[first : first + 500]
            marks = ", ".join("?" * len(chunk))
            for account, member_id in self.tx.all(
                f"SELECT account, member_id FROM ins_cards WHERE account IN ({marks})",
                chunk,
            ):
                self.cards[str(account)] = str(member_id)


def _apply(tx: Tx, rows: list[tuple[Any, ...]]) -> None:
    page = _Page(tx)
    parsed = [(d, s, t, k, json.loads(str(text)), st) for d, s, t, k, text, st in rows]
    for device, seq, _, kind, body, _ in parsed:
        if kind == Kind.ENROL:
            _enrol(page, str(device), int(seq), body)
        elif kind == Kind.CARD_REPLACE:
            page.bind(body.get("card"), str(body.get("member_id")))
    page.load_owners(
        {
            str(body.get("account"))
            for _, _, _, kind, body, _ in parsed
            if kind not in (Kind.ENROL, Kind.CARD_REPLACE)
            and str(body.get("account")).startswith("C")
        }
    )
    for device, seq, ts, kind, body, store in parsed:
        if kind == Kind.OFFER_TAKE:
            _offer_lot(page, str(device), int(seq), body)
        elif kind not in (Kind.ENROL, Kind.CARD_REPLACE):
            _sale(page, str(device), int(seq), str(ts), str(kind), body, str(store))
    tx.many(
        "INSERT INTO ins_members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        page.members,
    )
    tx.many("INSERT INTO ins_cards VALUES (?, ?) ON CONFLICT DO NOTHING", page.new_cards)
    tx.many(
        "INSERT INTO ins_sales VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        page.sales,
    )
    tx.many(
        "INSERT INTO ins_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        page.lines,
    )
    tx.many("INSERT INTO ins_lots VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", page.lots)
    if page.new_cards:
        # Rows of earlier pages that earned on a card this page bound to a member.
        for table in _RESOLVED:
            tx.run(
                f"UPDATE {table} SET member = (SELECT c.member_id FROM ins_cards c "
                f"WHERE c.account = {table}.member) WHERE member >= 'C' AND member < 'D' "
                "AND member IN (SELECT account FROM ins_cards)"
            )


def _enrol(page: _Page, device: str, seq: int, body: dict[str, Any]) -> None:
    member = body.get("member") or {}
    member_id = str(member.get("member_id"))
    birthday = member.get("birthday")
    born = str(birthday) if isinstance(birthday, str) and len(birthday) == 10 else None
    day = str(body.get("day"))
    page.members.append(
        (
            member_id,
            str(member.get("enrolled_store")),
            day,
            day_no(day),
            int(born[:4]) if born else None,
            born[5:] if born else None,
            member.get("gender"),
            member.get("household"),
            1 if member.get("consent_marketing") else 0,
        )
    )
    page.bind(body.get("card"), member_id)
    lot = body.get("lot")
    if isinstance(lot, dict) and body.get("bonus"):
        bonus = int(body["bonus"])
        page.lots.append((device, seq, member_id, day, bonus, str(lot["expires_on"])))
        page.sales.append(
            (device, seq, "bonus", member_id, str(member.get("enrolled_store")), day,
             day_no(day), 0, 0, None, 0, bonus, 0, 0)
        )  # fmt: skip


def _offer_lot(page: _Page, device: str, seq: int, body: dict[str, Any]) -> None:
    """A multiplier offer's bonus is a points lot like an earn's (it expires on its
    own date), so the liability report must not count it as expiring now. It is not
    a sale: no spend, no visit, so no ``ins_sales`` row (vouchers and gifts add
    nothing here; ``cmp_takes`` has them)."""
    lot = body.get("lot")
    points = int(body.get("points") or 0)
    if points > 0 and isinstance(lot, dict):
        member = page.owner(str(body.get("account")))
        day = str(body.get("day"))
        page.lots.append((device, seq, member, day, points, str(lot["expires_on"])))


def _sale(
    page: _Page, device: str, seq: int, ts: str, kind: str, body: dict[str, Any], store: str
) -> None:
    member = page.owner(str(body.get("account")))
    day = str(body.get("day"))
    local = dt.datetime.fromisoformat(ts) + page.offset
    receipt = body.get("receipt")
    points = int(body.get("points") or 0)
    amount, value, voucher = 0, 0, 0
    if kind == Kind.EARN:
        amount = int(body["amount"])
        page.sold[(device, str(receipt))] = list(body["lines"])
        for number, line in enumerate(body["lines"]):
            page.lines.append(
                (device, seq, number, member, store, day, line["category"], line["qty"],
                 line["amount"])
            )  # fmt: skip
        lot = body.get("lot")
        if points > 0 and isinstance(lot, dict):
            page.lots.append((device, seq, member, day, points, str(lot["expires_on"])))
    elif kind == Kind.REDEEM:
        value, voucher = int(body.get("value") or 0), int(body.get("amount") is None)
    elif kind == Kind.REFUND:
        amount = -int(body.get("amount") or 0)
        points = int((body.get("effects") or {}).get("delta") or 0)
        sold = _sold_lines(page, device, str(receipt))
        for line in body.get("lines") or []:
            category = sold[line["line_no"]]["category"] if line["line_no"] < len(sold) else "?"
            page.lines.append(
                (device, seq, line["line_no"], member, store, day, category, -line["qty"],
                 -line["amount"])
            )  # fmt: skip
    page.sales.append(
        (device, seq, kind, member, store, day, day_no(day), local.hour, local.isoweekday(),
         receipt, amount, points, value, voucher)
    )  # fmt: skip


def _sold_lines(page: _Page, device: str, receipt: str) -> list[dict[str, Any]]:
    if (device, receipt) in page.sold:
        return page.sold[(device, receipt)]
    row = page.tx.one(
        "SELECT body FROM entries WHERE device = ? AND seq = (SELECT seq FROM ins_sales "
        "WHERE device = ? AND receipt = ? AND kind = 'earn')",
        (device, device, receipt),
    )
    lines: list[dict[str, Any]] = json.loads(str(row[0]))["lines"] if row else []
    return lines
