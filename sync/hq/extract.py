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

from dataclasses import dataclass
from typing import Any

from agent.chain import Entry
from agent.entries import Kind


@dataclass(frozen=True)
class Facts:
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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def facts_of(entry: Entry) -> Facts:
    body = entry.body
    effects, member = _dict(body.get("effects")), _dict(body.get("member"))
    kind = entry.kind
    account, card, member_id, phone_key = _str(body.get("account")), None, None, None
    if kind == Kind.ENROL:
        member_id = _str(member.get("member_id"))
        account, card, phone_key = member_id, _str(body.get("card")), _str(member.get("phone_key"))
    elif kind == Kind.CARD_REPLACE:
        member_id = _str(body.get("member_id"))
        account, card = member_id, _str(body.get("card"))
    elif kind == Kind.EARN:
        card = _str(body.get("card"))
    amount = _int(body.get("amount"))
    spend = amount if kind == Kind.EARN else -amount if kind == Kind.REFUND else 0
    return Facts(
        account=account,
        delta=_int(effects.get("delta")),
        expired=_int(effects.get("expired")),
        amount=spend,
        card=card,
        member_id=member_id,
        phone_key=phone_key,
        visit=1 if kind in (Kind.EARN, Kind.REDEEM) else 0,
    )


def counter_member(body: dict[str, Any], own_store: bool) -> dict[str, Any]:
    """The fields of an enrolment a counter needs, and no more (docs/architecture.md,
    Trust): the phone key only to a till of the store that enrolled the member
    (``own_store``: by the enrolling device's store at HQ), so that one till's disk
    never holds the chain's phone keys; never a digit of the number (an entry written
    before issue 12 carries ``phone_last4``: it stays at HQ); the birthday month,
    not the date."""
    member = _dict(body.get("member"))
    birthday = _str(member.get("birthday")) or ""
    month = birthday[5:7]
    return {
        "member_id": _str(member.get("member_id")),
        "name": _str(member.get("name")),
        "phone_key": _str(member.get("phone_key")) if own_store else None,
        "birthday_month": int(month) if month.isascii() and month.isdigit() else None,
        "enrolled_store": _str(member.get("enrolled_store")),
    }
