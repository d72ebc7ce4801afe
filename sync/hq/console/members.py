"""A member's whole story for the console: found by card, member id or phone.

Everything is read from HQ's stored journals (``entries``) and the insight facts
(``ins_lots`` for expiry). A phone number is never looked up as digits: HQ turns
it into the chain's phone key (``sync.hq.devices.chain_phone``), the one the
tills stored, and looks the key up among enrolments.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.entries import CardReplace, Earn, Enrol, Kind, OfferTake, Redeem, Refund, readable
from agent.errors import InvalidInput
from agent.fields import PhonePepper, phone, phone_key
from sync.errors import invalid
from sync.hq.db import HQStore, Tx
from sync.hq.devices import chain_phone
from sync.hq.extract import counter_member
from sync.hq.member_keys import opened
from sync.hq.projection import ACCOUNTS, member_balance, spend_12m, tier_name

MAX_QUERY = 64
MAX_VISITS = 200
_MEMBER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)


def checked_query(text: str | None) -> str | None:
    """``q`` as given, or None when empty; refused when it cannot be any reference."""
    value = (text or "").strip()
    if not value:
        return None
    if len(value) > MAX_QUERY or not value.isprintable():
        raise invalid(
            "invalid_query", f"q: a card, member id or phone, at most {MAX_QUERY} characters"
        )
    return value


def find(store: HQStore, key: Ed25519PrivateKey, query: str) -> tuple[str, str] | None:
    """(member id, how it was found: card, member or phone), or None."""
    with store.read() as tx:
        if query.isdigit():
            row = tx.one(
                "SELECT member_id FROM entries WHERE card = ? AND member_id IS NOT NULL "
                "ORDER BY ts LIMIT 1",
                (query,),
            )
            if row is not None:
                return str(row[0]), "card"
            if tx.one("SELECT 1 FROM entries WHERE account = ? LIMIT 1", ("C" + query,)):
                return "C" + query, "card"
        if _MEMBER_ID.fullmatch(query) and tx.one(
            "SELECT 1 FROM entries WHERE member_id = ? OR account = ? LIMIT 1", (query, query)
        ):
            return query, "member"
    try:
        number = phone(query)
    except InvalidInput:
        return None
    given = chain_phone(store, key)
    pepper = PhonePepper(base64.b64decode(given["pepper"]), int(given["cost"]))
    with store.read() as tx:
        row = tx.one(
            "SELECT member_id FROM entries WHERE kind = 'enrol' AND phone_key = ? "
            "ORDER BY ts, device, seq LIMIT 1",
            (phone_key(number, pepper),),
        )
    return (str(row[0]), "phone") if row else None


def remaining_lots(
    balance: int, lots: Sequence[tuple[str, int]], today: str
) -> list[dict[str, Any]]:
    """What of ``balance`` expires when: the oldest-expiring lots are spent first,
    so the balance sits in the latest-expiring lots (``lots``: (expires_on, points))."""
    left, kept = max(0, balance), []
    for expires_on, points in sorted(lots, reverse=True):
        if left <= 0:
            break
        if expires_on < today or points <= 0:
            continue
        taken = min(points, left)
        kept.append({"expires_on": expires_on, "points": taken})
        left -= taken
    return sorted(kept, key=lambda lot: lot["expires_on"])


def _lots(tx: Tx, member: str) -> list[tuple[str, int]]:
    rows = tx.all(
        "SELECT expires_on, SUM(points) FROM ins_lots WHERE member = ? GROUP BY expires_on",
        (member,),
    )
    return [(str(day), int(points)) for day, points in rows]


def member_cards(tx: Tx, member: str) -> list[dict[str, Any]]:
    """Every card of the member, its state, and HQ's blocks."""
    return _cards(tx, member)


def every_visit(tx: Tx, member: str) -> list[dict[str, Any]]:
    """Every entry of the member's accounts at every store, newest first (no bound:
    an export, ``sync.hq.scrub``)."""
    return _visits(tx, member, limit=None)


def _cards(tx: Tx, member: str) -> list[dict[str, Any]]:
    cards: dict[str, dict[str, Any]] = {}
    for kind, text in tx.all(
        "SELECT kind, body FROM entries WHERE member_id = ? AND kind IN ('enrol', 'card_replace') "
        "ORDER BY ts, seq",
        (member,),
    ):
        body = readable(str(kind), json.loads(str(text)))
        if isinstance(body, CardReplace):
            cards[body.old_card] = {"card": body.old_card, "state": "replaced"}
        if isinstance(body, Enrol | CardReplace):
            cards[body.card] = {"card": body.card, "state": "active"}
    if member.startswith("C") and not cards:
        cards[member[1:]] = {"card": member[1:], "state": "active"}
    for card, at, who, reason in tx.all(
        "SELECT card, blocked_at, operator, reason FROM hq_card_blocks WHERE card IN "
        "(SELECT card FROM entries WHERE member_id = ? AND card IS NOT NULL) OR card = ?",
        (member, member[1:] if member.startswith("C") else ""),
    ):
        cards[str(card)] = {
            "card": str(card),
            "state": "blocked",
            "blocked_at": str(at),
            "blocked_by": str(who),
            "reason": str(reason),
        }
    for card in cards.values():
        card.setdefault("blocked", card["state"] != "active")
    return list(cards.values())


def _visits(tx: Tx, member: str, limit: int | None = MAX_VISITS) -> list[dict[str, Any]]:
    # Two indexed reads, not one OR: the member's accounts, and the few consent
    # entries (entries_consent) that name the member in their body.
    columns = "e.ts, e.seq, d.store, d.till, e.kind, e.body, e.delta - e.expired, e.amount"
    rows = tx.all(
        f"SELECT {columns} FROM entries e JOIN devices d ON d.device = e.device "  # noqa: S608
        f"WHERE e.account IN {ACCOUNTS} "
        "AND e.kind IN ('earn', 'redeem', 'refund', 'adjust', 'offer_take', 'enrol', "
        f"'card_replace', 'consent') UNION SELECT {columns} FROM entries e "
        "JOIN devices d ON d.device = e.device WHERE e.kind = 'consent' AND e.body LIKE ? "
        "ORDER BY 1 DESC, 2 DESC LIMIT ?",
        (member, member, f'%"member_id":{json.dumps(member)}%', limit or 10**9),
    )
    visits = []
    for ts, _, store_id, till, kind, text, points, amount in rows:
        body = readable(str(kind), json.loads(str(text)))
        receipt = body.receipt if isinstance(body, Earn | Redeem | Refund | OfferTake) else None
        visits.append(
            {
                "at": str(ts),
                "store": str(store_id),
                "till": str(till),
                "kind": str(kind),
                "receipt": receipt,
                "amount": int(amount),
                "points": int(points),
                "offer": body.offer_id if isinstance(body, OfferTake) else None,
            }
        )
    return visits


def story(store: HQStore, member: str, now: dt.datetime) -> dict[str, Any]:
    """Balance, tier, cards, lots expiring and visits (newest first) of one member."""
    from sync.hq.insight.facts import refresh

    refresh(store)  # the lots of batches stored since the last report
    with store.read() as tx:
        enrol = tx.one(
            "SELECT body FROM entries WHERE member_id = ? AND kind = 'enrol' ORDER BY ts LIMIT 1",
            (member,),
        )
        balance = member_balance(tx, member)
        tier = tier_name(spend_12m(tx, member, now))
        cards = _cards(tx, member)
        lots = _lots(tx, member)
        visits = _visits(tx, member)
        body = readable(Kind.ENROL, json.loads(str(enrol[0]))) if enrol else None
        # The name from the seal while HQ holds the member's key (none once erased).
        opened_member = opened(tx, body.member) if isinstance(body, Enrol) else None
    shown = counter_member(opened_member, own_store=False) if opened_member else {}
    return {
        "member_id": member,
        "name": shown.get("name"),
        "enrolled_store": shown.get("enrolled_store"),
        "balance": balance,
        "tier": tier,
        "cards": cards,
        "expiring": remaining_lots(balance, lots, now.date().isoformat()),
        "visits": visits,
    }
