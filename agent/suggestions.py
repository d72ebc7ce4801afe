"""HQ's suggestions at the counter, as the till holds them (issue 15).

HQ works out whom to call back, whose birthday is coming, who is lapsing and whom a
campaign targets (``sync.hq.insight.suggestions``), for members who gave marketing
consent only. The list travels on the last page of the signed download under
``suggestions`` (``sync.hq.directory``), the complete set for the chain (a member may
shop at any store), and this till *replaces* its own with it, like offers
(``agent.offers``). Each item is an object of strings but ``rank``:

- ``suggestion_id``: HQ's stable id (the same suggestion keeps it from one download
  to the next, so an answer given once is recognised);
- ``member_id``, ``reason`` (one of ``REASONS``), ``text`` (plain words for the
  cashier, no personal data beyond what the counter needs), ``rank`` (lower first);
- ``offer_id``: an offer of the same download's ``offers`` that accepting puts into
  the sale (``agent.ledger_offers``), or ``""``;
- ``home_store`` (the store the member shops at most, ``""`` when HQ cannot say)
  and ``last_visit`` (ISO date or ``""``), for the store's own list;
- ``valid_from``, ``valid_to``: ISO dates, both days included.

What a member answered is a ``suggestion_answer`` journal entry
(``agent.entries.SuggestionAnswer``), uploaded like every entry; the journal is the
only record of answers (a partial expression index finds one fast), so a rebuilt
projection needs nothing more. Migration ``008_suggestions`` of
``agent.store.MIGRATIONS`` creates ``hq_suggestions`` and the indexes.

This module must not import ``agent.store`` (which imports it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sqlite3
from typing import Any

from agent.journal import Journal
from agent.results import OfferShown, SuggestionShown
from agent.suggestion_words import SHOWN_PER_MEMBER

SUGGESTIONS_KEY = "suggestions"
REASONS = ("birthday", "expiring_points", "at_risk", "lapsed", "new_member", "campaign")
OUTCOMES = ("accepted", "declined", "later")
SUGGESTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
TEXT_LIMIT = 200

_TEXT_FIELDS = (
    "suggestion_id",
    "member_id",
    "reason",
    "text",
    "offer_id",
    "home_store",
    "last_visit",
    "valid_from",
    "valid_to",
)

_DDL = (
    "CREATE TABLE hq_suggestions (suggestion_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, "
    "reason TEXT NOT NULL, text TEXT NOT NULL, offer_id TEXT NOT NULL, "
    "home_store TEXT NOT NULL, last_visit TEXT NOT NULL, valid_from TEXT NOT NULL, "
    "valid_to TEXT NOT NULL, rank INTEGER NOT NULL)",
    "CREATE INDEX hq_suggestions_member ON hq_suggestions (member_id, rank)",
    "CREATE INDEX hq_suggestions_store ON hq_suggestions (home_store, valid_from)",
    # The journal is the record of answers and of consent given or withdrawn here.
    "CREATE INDEX journal_suggestion_answer ON journal (json_extract(body, '$.suggestion')) "
    "WHERE kind = 'suggestion_answer'",
    "CREATE INDEX journal_consent ON journal (json_extract(body, '$.member_id'), seq) "
    "WHERE kind = 'consent'",
)


def migrate_008_suggestions(db: Any) -> None:
    """``db`` is the ``sqlite_utils.Database`` the migration runner passes."""
    for statement in _DDL:
        db.execute(statement)


def _row(item: Any) -> tuple[Any, ...]:
    if not isinstance(item, dict):
        raise ValueError("a suggestion is not an object")
    texts = tuple(item[key] for key in _TEXT_FIELDS)
    rank = item["rank"]
    if not all(isinstance(value, str) for value in texts):
        raise ValueError(f"suggestion {texts[0]!r}: every field but rank must be a string")
    if not isinstance(rank, int) or isinstance(rank, bool):
        raise ValueError(f"suggestion {texts[0]!r}: rank must be an integer")
    if not SUGGESTION_ID.fullmatch(texts[0]):
        raise ValueError(f"suggestion {texts[0]!r}: bad id")
    if texts[2] not in REASONS:
        raise ValueError(f"suggestion {texts[0]!r}: unknown reason {texts[2]!r}")
    if not texts[3] or len(texts[3]) > TEXT_LIMIT:
        raise ValueError(f"suggestion {texts[0]!r}: text empty or over {TEXT_LIMIT} characters")
    for day in (texts[7], texts[8], *([texts[6]] if texts[6] else [])):
        dt.date.fromisoformat(day)
    return (*texts, rank)


def apply_suggestions(conn: sqlite3.Connection, delta: dict[str, Any]) -> int:
    """Replace this till's suggestions with the ``suggestions`` of a verified delta
    (inside the caller's transaction). A delta without the key (every page but the
    last, or an HQ before issue 15) changes nothing. Raises ``ValueError``/``KeyError``
    on a malformed list, which ``sync.till_sync`` answers as ``bad_delta`` with
    nothing applied."""
    if SUGGESTIONS_KEY not in delta:
        return 0
    items = delta[SUGGESTIONS_KEY]
    if not isinstance(items, list):
        raise ValueError("suggestions: not a list")
    rows = [_row(item) for item in items]
    conn.execute("DELETE FROM hq_suggestions")
    conn.executemany(
        "INSERT OR REPLACE INTO hq_suggestions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
    )
    return len(rows)


def forget_suggestions(conn: sqlite3.Connection, member_ids: list[str]) -> None:
    """Drop the suggestions of members HQ erased (``agent.privacy_tables.erase_here``)."""
    conn.executemany(
        "DELETE FROM hq_suggestions WHERE member_id = ?", [(member,) for member in member_ids]
    )


def answer_of(conn: sqlite3.Connection, suggestion_id: str) -> tuple[int, str] | None:
    """``(seq, outcome)`` of this till's answer to the suggestion, if any."""
    return Journal(conn).suggestion_answer(suggestion_id)


def suggestion(conn: sqlite3.Connection, suggestion_id: str) -> dict[str, Any] | None:
    """HQ's suggestion as this till holds it (valid or not), or None."""
    row = conn.execute(
        "SELECT suggestion_id, member_id, reason, text, offer_id, home_store, last_visit, "
        "valid_from, valid_to, rank FROM hq_suggestions WHERE suggestion_id = ?",
        (suggestion_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip((*_TEXT_FIELDS, "rank"), row, strict=True))


def withdrew_here(conn: sqlite3.Connection, member_id: str) -> bool:
    """Whether the member's latest consent recorded on this till withdrew it: the
    counter stops suggesting at once, before HQ hears of it."""
    return Journal(conn).consent_withdrawn(member_id)


def suggestions_for(
    conn: sqlite3.Connection,
    member_id: str | None,
    day: dt.date,
    offers: tuple[OfferShown, ...] = (),
    limit: int = SHOWN_PER_MEMBER,
) -> tuple[SuggestionShown, ...]:
    """The member's suggestions valid on ``day`` and not answered on this till, the
    ``limit`` that matter most (lowest rank first). ``offers`` are the member's offers
    the counter shows (``agent.offers.offers_for``): a suggestion's offer is shown
    only while it is one of them (not taken, still valid)."""
    if member_id is None or withdrew_here(conn, member_id):
        return ()
    iso = day.isoformat()
    rows = conn.execute(
        "SELECT suggestion_id, reason, text, valid_to, offer_id FROM hq_suggestions "
        "WHERE member_id = ? AND valid_from <= ? AND valid_to >= ? "
        "ORDER BY rank, suggestion_id",
        (member_id, iso, iso),
    ).fetchall()
    rows = _unanswered(conn, rows)[:limit]
    by_id = {offer.offer_id: offer for offer in offers}
    return tuple(
        SuggestionShown(
            id=str(row[0]),
            reason=str(row[1]),
            text=str(row[2]),
            valid_to=str(row[3]),
            offer=by_id.get(str(row[4])),
        )
        for row in rows
    )


@dataclasses.dataclass(frozen=True)
class StoreSuggestion:
    """One line of a store's list for its in-store advisors."""

    suggestion_id: str
    member_id: str
    reason: str
    text: str
    offer_id: str
    last_visit: str
    valid_to: str


def store_suggestions(
    conn: sqlite3.Connection, store: str, day: dt.date, limit: int = 500
) -> tuple[StoreSuggestion, ...]:
    """Today's suggestions for the members who shop at ``store`` most, not answered
    on this till, most important first (a member's consent withdrawn here drops them)."""
    iso = day.isoformat()
    rows = conn.execute(
        "SELECT suggestion_id, member_id, reason, text, offer_id, last_visit, valid_to "
        "FROM hq_suggestions WHERE home_store = ? AND valid_from <= ? AND valid_to >= ? "
        "ORDER BY rank, valid_to, suggestion_id",
        (store, iso, iso),
    ).fetchall()
    withdrawn: dict[str, bool] = {}
    listed = []
    for row in _unanswered(conn, rows):
        member = str(row[1])
        if member not in withdrawn:
            withdrawn[member] = withdrew_here(conn, member)
        if not withdrawn[member]:
            listed.append(StoreSuggestion(*map(str, row)))
    return tuple(listed[:limit])


def _unanswered(conn: sqlite3.Connection, rows: list[Any]) -> list[Any]:
    """``rows`` (the suggestion id first) but those answered on this till."""
    if not rows:
        return rows
    answered = Journal(conn).suggestions_answered(str(row[0]) for row in rows)
    return [row for row in rows if row[0] not in answered]
