"""Offers HQ targeted at members, as the till holds them (issue 8, "back to the counter").

- Migration ``005_offers`` of ``agent.store.MIGRATIONS`` creates ``hq_offers``
  (what HQ last sent: the complete set of offers for this till's members) and an
  index over the journal's ``offer_take`` entries, which are the only record of
  what was taken here (so a rebuild of the projection needs nothing more).
- ``apply_offers`` applies the ``offers`` list of a verified delta (HQ puts it on
  the last page of a download, ``sync.hq.directory``) inside the delta's
  transaction: it *replaces* the set, so an offer HQ withdrew, or that was taken
  at another till and synced, disappears from the counter.
- ``offers_for`` is what the counter shows: valid today, not taken on this till.

This module must not import ``agent.store`` (which imports it).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from typing import Any

from agent.journal import Journal
from agent.results import OfferShown

OFFERS_KEY = "offers"
KINDS = ("multiplier", "voucher", "gift")
_FIELDS = (
    "offer_id",
    "member_id",
    "campaign",
    "kind",
    "value",
    "title",
    "valid_from",
    "valid_to",
)
OFFER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)

_DDL = (
    "CREATE TABLE hq_offers (offer_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, "
    "campaign TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, title TEXT NOT NULL, "
    "valid_from TEXT NOT NULL, valid_to TEXT NOT NULL)",
    "CREATE INDEX hq_offers_member ON hq_offers (member_id)",
    # The journal is the record of takes: a partial expression index finds one fast.
    "CREATE INDEX journal_offer_take ON journal (json_extract(body, '$.offer_id')) "
    "WHERE kind = 'offer_take'",
)


def migrate_005_offers(db: Any) -> None:
    """``db`` is the ``sqlite_utils.Database`` the migration runner passes."""
    for statement in _DDL:
        db.execute(statement)


def _offer_row(item: Any) -> tuple[str, ...]:
    if not isinstance(item, dict):
        raise ValueError("an offer is not an object")
    row = tuple(item[key] for key in _FIELDS)
    if not all(isinstance(value, str) for value in row):
        raise ValueError(f"offer {row[0]!r}: every field must be a string")
    if not OFFER_ID.fullmatch(row[0]) or row[3] not in KINDS:
        raise ValueError(f"offer {row[0]!r}: bad id or kind")
    dt.date.fromisoformat(row[6])
    dt.date.fromisoformat(row[7])
    return row


def apply_offers(conn: sqlite3.Connection, delta: dict[str, Any]) -> int:
    """Replace this till's offers with the ``offers`` of a verified delta (inside the
    caller's transaction). A delta without the key (every page but the last) changes
    nothing. Raises ``ValueError``/``KeyError`` on a malformed list, which
    ``sync.till_sync`` answers as ``bad_delta`` with nothing applied."""
    if OFFERS_KEY not in delta:
        return 0
    items = delta[OFFERS_KEY]
    if not isinstance(items, list):
        raise ValueError("offers: not a list")
    rows = [_offer_row(item) for item in items]
    conn.execute("DELETE FROM hq_offers")
    conn.executemany("INSERT OR REPLACE INTO hq_offers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def taken(conn: sqlite3.Connection, offer_id: str) -> tuple[int, str] | None:
    """``(seq, receipt)`` of this till's take of the offer, if any."""
    return Journal(conn).offer_take(offer_id)


def bonus_on_receipt(conn: sqlite3.Connection, receipt: str) -> int:
    """Bonus points this till credited for points-multiplier offers on ``receipt``
    (a refund of the sale takes them back in proportion)."""
    return Journal(conn).offer_bonus_on(receipt)


def offer(conn: sqlite3.Connection, offer_id: str) -> dict[str, str] | None:
    row = conn.execute(
        "SELECT offer_id, member_id, campaign, kind, value, title, valid_from, valid_to "
        "FROM hq_offers WHERE offer_id = ?",
        (offer_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(_FIELDS, map(str, row), strict=True))


def offers_for(
    conn: sqlite3.Connection, member_id: str | None, day: dt.date
) -> tuple[OfferShown, ...]:
    """The member's offers valid on ``day`` and not yet taken on this till."""
    if member_id is None:
        return ()
    iso = day.isoformat()
    rows = conn.execute(
        "SELECT offer_id, title, kind, value, valid_to FROM hq_offers "
        "WHERE member_id = ? AND valid_from <= ? AND valid_to >= ? "
        "ORDER BY valid_to, offer_id",
        (member_id, iso, iso),
    ).fetchall()
    taken_here = Journal(conn).offers_taken(str(row[0]) for row in rows) if rows else set()
    return tuple(OfferShown(*map(str, row)) for row in rows if row[0] not in taken_here)
