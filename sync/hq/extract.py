"""What an entry means for HQ's projection, pulled out once at ingest.

The till's projection (``agent.projection``) records in every entry's body the
*effects* it had: ``delta`` (the change to the balance) and ``expired`` (points
whose lots ran out before it), so the balance change is ``delta - expired``.
HQ stores those numbers, and the account they belong to, in columns beside the
entry, which makes balances, spend and visits plain SQL aggregations.

Accounts: a member id, or ``"C" + card`` for a programme card that earned on a till
before it was enrolled there. ``enrol`` and ``card_replace`` entries bind cards to
members, so HQ resolves ``C`` accounts to their member across every store.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from agent.chain import Entry
from agent.entries import (
    Body,
    CardReplace,
    Earn,
    Enrol,
    Member,
    OnAccount,
    Redeem,
    Refund,
    readable,
)


class Facts(NamedTuple):
    """What HQ stores beside an entry, in the order of its last columns
    (``sync.hq.ingest.ENTRY_COLUMNS``; a tuple: one is made per ingested entry,
    and a frozen dataclass cost several times as much to make)."""

    account: str | None
    delta: int
    expired: int
    amount: int
    card: str | None
    member_id: str | None
    phone_key: str | None
    visit: int


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def facts_of(entry: Entry) -> Facts:
    return facts_of_body(entry, readable(entry.kind, entry.body))


def facts_of_body(entry: Entry, body: Body | None) -> Facts:
    """``facts_of`` with the entry's typed body already read (``readable``'s answer:
    HQ's ingest reads it once, to check the entry's hash)."""
    if body is None:
        # No till of this version writes it (a newer till's kind, or a body not of its
        # kind's shape): its effects still count on the account it names, nothing else.
        effects = entry.body.get("effects")
        effects = effects if isinstance(effects, dict) else {}
        account = entry.body.get("account")
        return Facts(
            account=account if isinstance(account, str) else None,
            delta=_int(effects.get("delta")),
            expired=_int(effects.get("expired")),
            amount=0,
            card=None,
            member_id=None,
            phone_key=None,
            visit=0,
        )
    effects = body.effects or {}
    account = body.account if isinstance(body, OnAccount) else None
    amount, card, member_id, phone_key = 0, None, None, None
    if isinstance(body, Enrol):
        member_id, card, phone_key = body.member.member_id, body.card, body.member.phone_key
        account = member_id
    elif isinstance(body, CardReplace):
        member_id, card = body.member_id, body.card
        account = member_id
    elif isinstance(body, Earn):
        amount, card = body.amount, body.card
    elif isinstance(body, Refund):
        amount = -body.amount
    return Facts(
        account=account,
        delta=effects.get("delta", 0),
        expired=effects.get("expired", 0),
        amount=amount,
        card=card,
        member_id=member_id,
        phone_key=phone_key,
        visit=1 if isinstance(body, Earn | Redeem) else 0,
    )


def counter_member(member: Member, own_store: bool) -> dict[str, Any]:
    """The fields of an enrolment a counter needs, and no more (docs/architecture.md,
    Trust): the phone key only to a till of the store that enrolled the member
    (``own_store``: by the enrolling device's store at HQ), so that one till's disk
    never holds the chain's phone keys; never a digit of the number (an entry written
    before issue 12 carries ``phone_last4``: it stays at HQ); the birthday month,
    not the date."""
    month = (member.birthday or "")[5:7]
    return {
        "member_id": member.member_id,
        "name": member.name,
        "phone_key": member.phone_key if own_store else None,
        "birthday_month": int(month) if month.isascii() and month.isdigit() else None,
        "enrolled_store": member.enrolled_store,
    }
