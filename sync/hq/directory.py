"""What HQ sends down to a till: signed deltas of its directory since a cursor.

A delta carries the members and cards enrolled or replaced in the batches after
the till's cursor (only what a counter needs, ``sync.hq.extract.counter_member``:
phone keys only of the till's own store's members),
the HQ-confirmed balance of every account those batches touched, and
``included_seq``: how far HQ holds *this* till's own chain in the same snapshot.
The last page (``more`` false) also carries ``offers``: every current campaign
offer for the members of the till's store, and of chain-wide campaigns
(``sync.hq.insight.campaigns.device_offers``), and ``suggestions``: the chain's HQ
suggestions for consenting members (``sync.hq.insight.suggestions``), whose offers
join ``offers``; the till replaces its sets with them.
The till's view of a balance is then that balance plus its own entries after
``included_seq`` (``agent.till_view``). Balances and ``included_seq`` come from one
REPEATABLE READ snapshot, so they always agree.

Batches are numbered in commit order (``sync.hq.ingest``), so "every batch after
my cursor" never skips one that committed late. Pages are bounded; ``more`` says
to ask again from the new cursor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.entries import CardReplace, Enrol, Kind, Member, readable
from agent.offers import OFFERS_KEY
from agent.privacy_tables import ERASED_KEY
from agent.suggestions import SUGGESTIONS_KEY
from sync.errors import invalid, refused, unverified
from sync.hq.db import HQStore
from sync.hq.extract import counter_member
from sync.hq.ingest import signed_head
from sync.hq.insight.campaigns import device_offers
from sync.hq.insight.suggestions import device_suggestions, prepare
from sync.hq.member_keys import erased_between, opened
from sync.hq.projection import member_balance, member_of
from sync.protocol import DELTA_TAG, LOOKUP_TAG, signed, utc_text
from sync.registration import State

PAGE_BATCHES = 100


def head(store: HQStore, key: Ed25519PrivateKey, device: str, now: dt.datetime) -> dict[str, Any]:
    with store.read() as tx:
        row = tx.one("SELECT head_seq, head_hash FROM devices WHERE device = ?", (device,))
    if row is None:
        raise unverified("unknown_device", f"device {device!r} is not registered", http_status=401)
    return signed_head(key, device, int(row[0]), str(row[1]), now)


def delta(
    store: HQStore,
    key: Ed25519PrivateKey,
    device: str,
    cursor: int,
    now: dt.datetime,
    page: int = PAGE_BATCHES,
) -> dict[str, Any]:
    # HQ's suggestions are worked out again at most every few minutes (one read
    # when they are fresh), before the snapshot that sends them.
    prepare(store, now)
    with store.read() as tx:
        own = tx.one("SELECT head_seq, store FROM devices WHERE device = ?", (device,))
        if own is None:
            raise unverified("unknown_device", f"device {device!r} is not registered")
        # Card blocks (sync.hq.console.actions) are numbered from the batch clock
        # too: they come down in the same order, in the same pages.
        batches = tx.all(
            "SELECT batch_no FROM (SELECT batch_no FROM batches WHERE batch_no > ? UNION ALL "
            "SELECT batch_no FROM hq_card_blocks WHERE batch_no > ? UNION ALL "
            "SELECT batch_no FROM hq_erasures WHERE batch_no > ?) n "
            "ORDER BY batch_no LIMIT ?",
            (cursor, cursor, cursor, page + 1),
        )
        more = len(batches) > page
        upto = int(batches[:page][-1][0]) if batches else cursor
        # Whether the enrolling device is of the asking till's store, by HQ's own record
        # of the device (not the entry's word): only then does a phone key go down.
        rows = tx.all(
            "SELECT e.kind, e.account, CASE WHEN e.kind IN ('enrol', 'card_replace') "
            "THEN e.body END, CASE WHEN d.store = ? THEN 1 ELSE 0 END "
            "FROM entries e JOIN batches b ON e.device = b.device "
            "AND e.seq BETWEEN b.first_seq AND b.last_seq JOIN devices d ON d.device = e.device "
            "WHERE b.batch_no > ? AND b.batch_no <= ? ORDER BY b.batch_no, e.seq",
            (own[1], cursor, upto),
        )
        members, cards, accounts = _directory(rows, lambda member: opened(tx, member))
        cards = _blocked(tx, cards, cursor, upto)
        owners = sorted({member_of(tx, account) for account in accounts})
        balances = [
            {"member_id": member, "balance": member_balance(tx, member)} for member in owners
        ]
        rules = tx.one("SELECT value FROM hq_meta WHERE key = 'rules'")
        # The last page carries the complete set of this till's offers (bounded, see
        # sync.hq.insight.campaigns); the till replaces its own with it (agent.offers).
        offers = None if more else device_offers(tx, store.dialect, str(own[1]), now.date())
        # The chain's suggestions (sync.hq.insight.suggestions), and the offers they
        # carry that the till's own set lacks.
        suggestions: list[dict[str, Any]] = []
        if offers is not None:
            suggestions, extra = device_suggestions(tx, now.date(), offers)
            offers += extra
        erased = erased_between(tx, cursor, upto)
    document = {
        "device": device,
        "cursor_from": cursor,
        "cursor": upto,
        "more": more,
        "hq_time": utc_text(now),
        "included_seq": int(own[0]),
        "members": members,
        "cards": cards,
        "balances": balances,
        "rules": {"text": str(rules[0])} if rules else {},
        "staff": [],
        # Members HQ erased in this page (sync.hq.scrub): each till destroys its copy.
        ERASED_KEY: erased,
    }
    if offers is not None:
        document[OFFERS_KEY] = offers
        document[SUGGESTIONS_KEY] = suggestions
    return signed(key, DELTA_TAG, document)


def _directory(
    rows: list[tuple[Any, ...]],
    opened: Callable[[Member], Member],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    members: list[dict[str, Any]] = []
    cards: dict[str, dict[str, Any]] = {}
    accounts: set[str] = set()
    for kind, account, text, own_store in rows:
        if account is not None:
            accounts.add(str(account))
        if text is None:
            continue
        body = readable(str(kind), json.loads(str(text)))
        if isinstance(body, Enrol):
            member = counter_member(opened(body.member), bool(own_store))
            members.append(member)
            cards[body.card] = {
                "card": body.card,
                "member_id": member["member_id"],
                "state": "active",
            }
        elif isinstance(body, CardReplace):
            old, new, owner = body.old_card, body.card, body.member_id
            cards[old] = {"card": old, "member_id": owner, "state": "blocked"}
            cards[new] = {"card": new, "member_id": owner, "state": "active"}
    return members, list(cards.values()), accounts


def _blocked(tx: Any, cards: list[dict[str, Any]], cursor: int, upto: int) -> list[dict[str, Any]]:
    """The page's cards with HQ's blocks applied: a card blocked at HQ is sent
    ``blocked`` whenever it is sent, and each block of this page is sent once."""
    listed = {str(card["card"]): card for card in cards}
    named = sorted(listed)
    blocks = tx.all(
        "SELECT card, member_id FROM hq_card_blocks WHERE batch_no > ? AND batch_no <= ?",
        (cursor, upto),
    )
    for start in range(0, len(named), 500):
        chunk = named[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        blocks += tx.all(
            f"SELECT card, member_id FROM hq_card_blocks WHERE card IN ({marks})",  # noqa: S608
            chunk,
        )
    for card, member in blocks:
        known = listed.get(str(card), {})
        owner = known.get("member_id") or member or "C" + str(card)
        listed[str(card)] = {"card": str(card), "member_id": owner, "state": "blocked"}
    return list(listed.values())


# A till may ask HQ for a member by phone key this often (``phone_lookup``): enough
# for a counter's forgotten cards, far too few to walk a numbering plan through a
# stolen till's credentials. Every lookup is recorded (``phone_lookups``).
LOOKUPS_PER_HOUR = 30
_PHONE_KEY = re.compile(r"[0-9a-f]{64}", re.ASCII)


def phone_lookup(
    store: HQStore, key: Ed25519PrivateKey, device: str, request: Any, now: dt.datetime
) -> dict[str, Any]:
    """A member of any store by the phone key a till computed (its chain pepper):
    member id, name and active card, signed; ``unknown_phone`` (404) if none."""
    phone_key = request.get("phone_key") if isinstance(request, dict) else None
    if not isinstance(phone_key, str) or not _PHONE_KEY.fullmatch(phone_key):
        raise invalid("invalid_phone_key", "phone_key: 64 lowercase hexadecimal digits")
    since = utc_text(now - dt.timedelta(hours=1))
    with store.write() as tx:
        # The device's row lock: two lookups of one till count one after the other.
        own = tx.locked("SELECT state FROM devices WHERE device = ?", (device,))
        if own is None or str(own[0]) == State.FROZEN.value:
            raise refused("device_frozen", "this till is frozen at HQ", http_status=403)
        done = tx.one(
            "SELECT COUNT(*) FROM phone_lookups WHERE device = ? AND at > ?", (device, since)
        )
        if done is not None and int(done[0]) >= LOOKUPS_PER_HOUR:
            raise refused(
                "rate_limited",
                f"phone lookups: at most {LOOKUPS_PER_HOUR} an hour per till; find the "
                "member by card",
                http_status=429,
            )
        found = tx.one(
            "SELECT member_id, body FROM entries WHERE kind = 'enrol' AND phone_key = ? "
            "ORDER BY ts, device, seq LIMIT 1",
            (phone_key,),
        )
        member = str(found[0]) if found else None
        tx.run(
            "INSERT INTO phone_lookups (device, at, member_id) VALUES (?, ?, ?)",
            (device, utc_text(now), member),
        )
        card = tx.one(
            "SELECT card FROM entries WHERE member_id = ? AND card IS NOT NULL "
            "ORDER BY ts DESC, seq DESC LIMIT 1",
            (member,),
        )
        enrol = readable(Kind.ENROL, json.loads(str(found[1]))) if found else None
        if isinstance(enrol, Enrol):  # its name from the seal, if not erased
            enrol = dataclasses.replace(enrol, member=opened(tx, enrol.member))
    if found is None:
        raise refused("unknown_phone", "phone: no member with this phone key", http_status=404)
    answer = {
        "device": device,
        "phone_key": phone_key,
        "member_id": member,
        "name": enrol.member.name if isinstance(enrol, Enrol) else None,
        "card": str(card[0]) if card else None,
        "hq_time": utc_text(now),
    }
    return signed(key, LOOKUP_TAG, answer)
