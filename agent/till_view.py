"""The till's view of a balance while offline (docs/architecture.md, invariant 7).

    view = last HQ-confirmed balance + this till's entries HQ had not counted

HQ sends each balance with ``included_seq``: how far it held this till's own
chain when it computed the balance (``sync.hq.directory``). Entries of this till
after that sequence are added from the local journal, using the effects each
entry recorded (``delta - expired``, ``agent.projection``). An account HQ never
confirmed counts only this till's entries (``included_seq`` 0).

Accounts: a member id, or ``"C" + card`` for a card not enrolled on this till;
HQ's card directory (``hq_cards``) ties such a card to its member, so points the
card earned here and points the member holds across the chain add up.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from agent.journal import Journal


def _member_for(conn: sqlite3.Connection, account: str) -> str:
    if account.startswith("C"):
        row = conn.execute(
            "SELECT member_id FROM hq_cards WHERE card = ?", (account[1:],)
        ).fetchone()
        if row is not None:
            return str(row[0])
    return account


def _accounts(conn: sqlite3.Connection, account: str, member: str) -> list[str]:
    cards = conn.execute("SELECT card FROM hq_cards WHERE member_id = ?", (member,)).fetchall()
    return sorted({account, member, *("C" + str(row[0]) for row in cards)})


def till_view(conn: sqlite3.Connection, account: str, device_id: str) -> int:
    """Points the member holds as far as this till can know (may be negative).

    ``device_id`` is this till's own device: ``included_seq`` counts its chain,
    and the local journal holds only its entries."""
    confirmed, local = view_parts(conn, account, device_id)
    return confirmed + local


def view_parts(conn: sqlite3.Connection, account: str, device_id: str) -> tuple[int, int]:
    """``till_view`` in its two parts: the balance HQ last confirmed, and the net
    change of this till's entries HQ had not counted then."""
    own = conn.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()
    if own is not None and str(own[0]) != device_id:
        raise ValueError(f"till_view: this ledger belongs to device {own[0]}, not {device_id}")
    member = _member_for(conn, account)
    row = conn.execute(
        "SELECT balance, included_seq FROM hq_balances WHERE member_id = ?", (member,)
    ).fetchone()
    confirmed, included = (int(row[0]), int(row[1])) if row else (0, 0)
    local = Journal(conn).net_change_after(included, _accounts(conn, account, member))
    return confirmed, local


def has_hq_balance(conn: sqlite3.Connection, account: str) -> bool:
    """Whether HQ has confirmed a balance for the member behind ``account``."""
    member = _member_for(conn, account)
    row = conn.execute("SELECT 1 FROM hq_balances WHERE member_id = ?", (member,)).fetchone()
    return row is not None


def hours_since_hq(conn: sqlite3.Connection, now: dt.datetime) -> float | None:
    """Hours since the last delta HQ sent (None: never synced)."""
    return hours_since(last_download(conn), now)


def last_download(conn: sqlite3.Connection) -> str | None:
    """When the last delta from HQ was applied (``sync_state``), None if never."""
    row = conn.execute("SELECT value FROM sync_state WHERE key = 'last_download'").fetchone()
    return None if row is None else str(row[0])


def hours_since(moment: str | None, now: dt.datetime) -> float | None:
    """Hours from ``moment`` (ISO text, None: never) to ``now``."""
    if moment is None:
        return None
    return (now - dt.datetime.fromisoformat(moment)).total_seconds() / 3600


def redeemable(
    conn: sqlite3.Connection,
    account: str,
    device_id: str,
    *,
    offline_cap: int,
    offline_after_hours: int,
    now: dt.datetime,
) -> int:
    """Points that may be redeemed now, at any age of the last sync.

    Between two syncs a till cannot know what other tills did with the confirmed
    balance, however recently it synced: it lets the member spend at most
    ``rules.offline_cap`` of it, net of this till's own entries since
    (redemptions spend the window, points earned here widen it: no other till
    knows of them). Once HQ has counted this till's entries (``included_seq``)
    the window reopens. Once HQ has not been heard from for
    ``rules.offline_after_hours`` (or ever), the cap also bounds the whole view.

    So a member spends the same points at most once per till between syncs, up
    to the cap at each; HQ flags an account that goes negative."""
    confirmed, local = view_parts(conn, account, device_id)
    window = max(0, min(confirmed, offline_cap) + local)
    age = hours_since_hq(conn, now)
    if age is None or age > offline_after_hours:
        return min(window, offline_cap)
    return window
