"""HQ's suggestions (and offers) put on a till as its download would leave them, for
the tests of the counter's surfaces (command line, local API, cashier app)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.suggestions import apply_suggestions


def item(member: str, suggestion_id: str = "sg-1", **overrides: Any) -> dict[str, Any]:
    """One suggestion of the download's list, valid today."""
    return {
        "suggestion_id": suggestion_id,
        "member_id": member,
        "reason": "birthday",
        "text": "Birthday in 5 days: wish them well",
        "offer_id": "",
        "home_store": "S001",
        "last_visit": "2026-11-20",
        "valid_from": "2026-01-01",
        "valid_to": "2099-12-31",
        "rank": 1,
        **overrides,
    }


def hold(state: Path, *items: dict[str, Any]) -> None:
    """Replace the till's suggestions (``state``: its state directory) with ``items``."""
    with _ledger(state) as conn:
        apply_suggestions(conn, {"suggestions": list(items)})


def give_offer(
    state: Path, member: str, offer_id: str = "GIFT-1", title: str = "A coffee mug"
) -> None:
    """A gift HQ offers the member, valid today (a suggestion's ``offer_id`` names it)."""
    with _ledger(state) as conn:
        conn.execute(
            "INSERT INTO hq_offers VALUES (?, ?, 'suggestion', 'gift', 'mug', ?, "
            "'2026-01-01', '2099-12-31')",
            (offer_id, member, title),
        )


def first_member(state: Path) -> str:
    with _ledger(state) as conn:
        return str(conn.execute("SELECT member_id FROM members ORDER BY rowid").fetchone()[0])


@contextlib.contextmanager
def _ledger(state: Path) -> Iterator[sqlite3.Connection]:
    """The till's database for one transaction, closed after."""
    conn = sqlite3.connect(state / "ledger.db")
    try:
        with conn:
            yield conn
    finally:
        conn.close()
