"""Member accounts across every store, as SQL aggregations over stored journals.

Nothing here is cached: a balance is the sum of ``delta - expired`` over every
entry of the member's account, plus the entries of every programme card bound to
the member (``enrol`` and ``card_replace`` entries bind cards; a card that earned
on a till before it was enrolled there booked to account ``"C" + card``). So the
projection can always be rebuilt from the journals, and it grows with the
database, not with one process's memory.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sync.hq.db import HQStore, Tx
from sync.hq.insight.takes import offer_alerts

# Account -> member, for C-accounts of cards some enrolment or replacement bound.
_OWNERS = (
    "SELECT 'C' || card AS account, MIN(member_id) AS member_id FROM entries "
    "WHERE member_id IS NOT NULL AND card IS NOT NULL GROUP BY card"
)

_TOTALS = (
    f"WITH owners AS ({_OWNERS}) "  # noqa: S608 (constant SQL fragments)
    "SELECT COALESCE(o.member_id, e.account) AS member, SUM(e.delta - e.expired), "
    "SUM(e.amount), MAX(CASE WHEN e.visit = 1 THEN e.ts END) "
    "FROM entries e LEFT JOIN owners o ON o.account = e.account "
    "WHERE e.account IS NOT NULL GROUP BY COALESCE(o.member_id, e.account)"
)
_NEGATIVE = _TOTALS + " HAVING SUM(e.delta - e.expired) < 0"


# A member's accounts: its id and the ``C`` account of every card bound to it. A
# list the planner can look each up by index (``account = ? OR account IN (...)``
# made PostgreSQL scan every entry). Parameters: the member twice.
ACCOUNTS = (
    "(SELECT CAST(? AS TEXT) UNION "
    "SELECT 'C' || card FROM entries WHERE member_id = ? AND card IS NOT NULL)"
)


def member_of(tx: Tx, ref: str) -> str:
    """A member id, a card's digits or a ``C`` account, resolved to its owner."""
    card = ref[1:] if ref.startswith("C") and ref[1:].isdigit() else ref
    if card.isdigit():
        row = tx.one(
            "SELECT member_id FROM entries WHERE card = ? AND member_id IS NOT NULL "
            "ORDER BY member_id LIMIT 1",
            (card,),
        )
        return str(row[0]) if row else "C" + card
    return ref


def member_balance(tx: Tx, member: str) -> int:
    row = tx.one(
        f"SELECT COALESCE(SUM(delta - expired), 0) FROM entries WHERE account IN {ACCOUNTS}",  # noqa: S608 (constant SQL fragments)
        (member, member),
    )
    return int(row[0]) if row else 0


def balance(store: HQStore, ref: str) -> dict[str, Any]:
    with store.read() as tx:
        member = member_of(tx, ref)
        return {"member_id": member, "balance": member_balance(tx, member)}


def members(store: HQStore) -> list[dict[str, Any]]:
    """Every account's balance, lifetime spend and last visit (one aggregation)."""
    with store.read() as tx:
        rows = tx.all(_TOTALS + " ORDER BY 1")
    return [
        {
            "member_id": str(row[0]),
            "balance": int(row[1] or 0),
            "lifetime_spend": int(row[2] or 0),
            "last_visit": row[3],
        }
        for row in rows
    ]


def derived_alerts(tx: Tx) -> list[dict[str, Any]]:
    """Alerts that follow from the journals themselves, found by SQL each time."""
    found: list[dict[str, Any]] = [
        {"kind": "negative_balance", "member_id": str(row[0]), "balance": int(row[1])}
        for row in tx.all(_NEGATIVE)
    ]
    for (phone_key,) in tx.all(
        "SELECT e.phone_key FROM entries e JOIN devices d ON d.device = e.device "
        "WHERE e.kind = 'enrol' AND e.phone_key IS NOT NULL "
        "GROUP BY e.phone_key HAVING COUNT(DISTINCT d.store) > 1"
    ):
        rows = tx.all(
            "SELECT e.member_id, d.store FROM entries e JOIN devices d ON d.device = e.device "
            "WHERE e.kind = 'enrol' AND e.phone_key = ? ORDER BY e.member_id",
            (phone_key,),
        )
        found.append(
            {
                "kind": "duplicate_enrolment",
                "phone_key": phone_key,
                "members": [str(row[0]) for row in rows],
                "stores": sorted({str(row[1]) for row in rows}),
            }
        )
    return found


def alerts(store: HQStore) -> list[dict[str, Any]]:
    """Stored alerts (forks, tampered uploads, clock skew) and derived ones."""
    with store.read() as tx:
        stored = tx.all("SELECT kind, device, detail, raised_at FROM alerts ORDER BY alert_id")
        derived = derived_alerts(tx)
    listed = [
        {"kind": str(kind), "device": device, "raised_at": at, **json.loads(str(detail))}
        for kind, device, detail, at in stored
    ]
    # Opens its own write transaction: outside the read snapshot above.
    return listed + derived + offer_alerts(store)


def tier_name(spend_12m: int) -> str:
    """The tier of the shipped rules for a rolling 12-month spend (minor units):
    what the console shows beside a member's balance."""
    from agent.rules import default_rules_text, load_rules_text

    return load_rules_text(default_rules_text()).tier_for(spend_12m).name


def spend_12m(tx: Tx, member: str, now: dt.datetime) -> int:
    since = (now - dt.timedelta(days=365)).isoformat()
    row = tx.one(
        f"SELECT COALESCE(SUM(amount), 0) FROM entries WHERE ts > ? AND account IN {ACCOUNTS}",  # noqa: S608 (constant SQL fragments)
        (since, member, member),
    )
    return int(row[0]) if row else 0
