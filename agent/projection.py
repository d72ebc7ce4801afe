"""Balances as a projection of the journal.

``apply(conn, seq, kind, body)`` writes what one journal entry means into the
projection tables and returns its *effects* (``delta``: the entry's change to the
balance, ``expired``: points whose lots ran out before it). The live path calls it
inside the same transaction that appends the entry and stores the effects in the
body; ``rebuild`` replays every entry through the very same function and checks
that it reproduces those effects. So the journal explains every balance.

Points live in lots (one per earning entry) so that expiry and the lock window
can be honoured: oldest-expiring lots are spent first. A refund that takes back
points already spent leaves a ``debt`` that later earnings pay off first.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any

from agent.entries import (
    Adjust,
    CardReplace,
    Earn,
    Enrol,
    Lot,
    OfferTake,
    Redeem,
    Refund,
    kind_of,
    read_body,
)
from agent.errors import LedgerError
from agent.journal import Journal
from agent.store import PROJECTION_TABLES

Effects = dict[str, int]


def apply(conn: sqlite3.Connection, seq: int, kind: str, body: dict[str, Any]) -> Effects:
    """Write entry ``seq`` into the projection; ``unknown_entry_kind`` for a kind this
    code does not know, ``malformed_entry`` for a body not of its kind's shape."""
    known = kind_of(kind)
    if known is None:
        raise LedgerError("unknown_entry_kind", f"journal entry {seq}: unknown kind {kind!r}")
    match read_body(known, body, seq):
        case Enrol() as enrol:
            return _enrol(conn, seq, enrol)
        case CardReplace() as replace:
            return _card_replace(conn, replace)
        case Earn() as earn:
            return _earn(conn, seq, earn)
        case Redeem() as redeem:
            return _redeem(conn, seq, redeem)
        case Refund() as refund:
            return _refund(conn, seq, refund)
        case Adjust() as adjust:
            return _adjust(conn, seq, adjust)
        case OfferTake() as take:
            return _offer_take(conn, seq, take)
        case _:
            # ``init`` names the device and its key, ``key_rotate`` hands the journal to
            # a new key (agent.rotation): neither changes a balance.
            return {"delta": 0, "expired": 0}


def _lot(lot: Lot | None) -> dict[str, str] | None:
    return None if lot is None else {"spendable_on": lot.spendable_on, "expires_on": lot.expires_on}


def _enrol(conn: sqlite3.Connection, seq: int, body: Enrol) -> Effects:
    member = body.member
    conn.execute(
        "INSERT INTO members (member_id, name, phone_key, phone_last4, birthday, gender, "
        "district, household, consent_marketing, enrolled_at, enrolled_store, enrolled_till, "
        "enrolled_by) VALUES (:member_id, :name, :phone_key, :phone_last4, :birthday, "
        ":gender, :district, :household, :consent_marketing, :enrolled_at, :enrolled_store, "
        ":enrolled_till, :enrolled_by)",
        # Entries written before issue 12 carry the number's last four digits; later
        # ones do not (the counter never needed them).
        dataclasses.asdict(member),
    )
    member_id, card = member.member_id, body.card
    previous = conn.execute("SELECT account FROM cards WHERE card = ?", (card,)).fetchone()
    if previous is not None:
        # The card earned offline before it was enrolled here: its points move along.
        for table in ("lots", "receipts", "debts", "remote_draws"):
            conn.execute(
                f"UPDATE {table} SET account = ? WHERE account = ?",  # noqa: S608 (fixed names)
                (member_id, previous[0]),
            )
        conn.execute("UPDATE cards SET account = ? WHERE card = ?", (member_id, card))
    else:
        conn.execute(
            "INSERT INTO cards VALUES (?, ?, 'active', ?, ?)",
            (card, member_id, body.card_kind, body.day),
        )
    expired = _expire(conn, member_id, body.day)
    delta = _add_lot(conn, seq, member_id, body.day, body.bonus, _lot(body.lot))
    return {"delta": delta, "expired": expired}


def _card_replace(conn: sqlite3.Connection, body: CardReplace) -> Effects:
    conn.execute("UPDATE cards SET state = 'blocked' WHERE card = ?", (body.old_card,))
    conn.execute(
        "INSERT INTO cards VALUES (?, ?, 'active', 'physical', ?)",
        (body.card, body.member_id, body.day),
    )
    return {"delta": 0, "expired": 0}


def _earn(conn: sqlite3.Connection, seq: int, body: Earn) -> Effects:
    account, day = body.account, body.day
    if body.card is not None:
        conn.execute(
            "INSERT OR IGNORE INTO cards VALUES (?, ?, 'active', 'physical', ?)",
            (body.card, account, day),
        )
    expired = _expire(conn, account, day)
    sold = [[line.category, line.qty, line.amount, line.points, 0, 0, 0] for line in body.lines]
    _insert_receipt(conn, seq, body, json.dumps(sold))
    delta = _add_lot(conn, seq, account, day, body.points, _lot(body.lot))
    return {"delta": delta, "expired": expired}


def _redeem(conn: sqlite3.Connection, seq: int, body: Redeem) -> Effects:
    account, day = body.account, body.day
    expired = _expire(conn, account, day)
    _insert_receipt(conn, seq, body, None)
    taken = _consume(conn, seq, account, day, body.points, spendable_only=True, record=True)
    if taken < body.points:
        conn.execute(
            "INSERT INTO remote_draws VALUES (?, ?, ?)", (seq, account, body.points - taken)
        )
    return {"delta": -body.points, "expired": expired}


def _refund(conn: sqlite3.Connection, seq: int, body: Refund) -> Effects:
    account, day, receipt = body.account, body.day, body.receipt
    expired = _expire(conn, account, day)
    if body.lines:
        row = conn.execute(
            "SELECT lines FROM receipts WHERE op = 'earn' AND receipt = ?", (receipt,)
        ).fetchone()
        sold = json.loads(row[0])
        for line in body.lines:
            sold[line.line_no][4] += line.qty
            sold[line.line_no][5] += line.amount
            sold[line.line_no][6] += line.points
        conn.execute(
            "UPDATE receipts SET lines = ?, refunded_amount = refunded_amount + ? "
            "WHERE op = 'earn' AND receipt = ?",
            (json.dumps(sold), body.amount, receipt),
        )
    taken = body.taken
    if taken:
        earn = conn.execute(
            "SELECT seq FROM receipts WHERE op = 'earn' AND receipt = ?", (receipt,)
        ).fetchone()
        own = _take_from_lot(conn, earn[0], day, taken) if earn else 0
        left = taken - own
        left -= _consume(conn, seq, account, day, left, spendable_only=False, record=False)
        if left:
            conn.execute(
                "INSERT INTO debts VALUES (?, ?) "
                "ON CONFLICT(account) DO UPDATE SET points = points + excluded.points",
                (account, left),
            )
    returned = body.returned
    if returned:
        conn.execute(
            "UPDATE receipts SET returned = returned + ? WHERE op = 'redeem' AND receipt = ?",
            (returned, receipt),
        )
        expired += _restore(conn, receipt, day, returned)
    return {"delta": returned - taken, "expired": expired}


def _adjust(conn: sqlite3.Connection, seq: int, body: Adjust) -> Effects:
    account, day, points = body.account, body.day, body.points
    expired = _expire(conn, account, day)
    if points > 0:
        return {
            "delta": _add_lot(conn, seq, account, day, points, _lot(body.lot)),
            "expired": expired,
        }
    taken = _consume(conn, seq, account, day, -points, spendable_only=False, record=False)
    if taken != -points:
        raise LedgerError("projection_mismatch", f"entry {seq}: adjustment exceeds the balance")
    return {"delta": points, "expired": expired}


def _offer_take(conn: sqlite3.Connection, seq: int, body: OfferTake) -> Effects:
    """An HQ offer taken at the counter. A voucher or a gift moves no points (its money
    value is in the body); a points multiplier credits its bonus as a lot. Which
    offers were taken is the journal itself (``agent.offers.taken``)."""
    account, day = body.account, body.day
    expired = _expire(conn, account, day)
    delta = _add_lot(conn, seq, account, day, body.points, _lot(body.lot))
    return {"delta": delta, "expired": expired}


def _insert_receipt(
    conn: sqlite3.Connection, seq: int, body: Earn | Redeem, lines: str | None
) -> None:
    """The receipt row that makes an earn or a redemption idempotent by receipt id.
    The live path stores the cashier's answer once it is known (after this entry's
    effects, ``agent.ledger``); a rebuild has it in the body."""
    conn.execute(
        "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
        (
            body.kind,
            body.receipt,
            body.account,
            seq,
            body.fingerprint,
            None if body.result is None else result_text(body.result),
            body.amount,
            body.points,
            body.day,
            lines,
        ),
    )


def result_text(result: dict[str, Any]) -> str:
    """How a cashier's answer is kept for replays (sorted: the journal's key order)."""
    return json.dumps(result, ensure_ascii=False, sort_keys=True)


# -- lots --------------------------------------------------------------------------


def _add_lot(
    conn: sqlite3.Connection,
    seq: int,
    account: str,
    day: str,
    points: int,
    lot: dict[str, str] | None,
) -> int:
    """Credit ``points``: a debt is paid off first, the rest becomes a lot."""
    if points <= 0 or lot is None:
        return 0
    row = conn.execute("SELECT points FROM debts WHERE account = ?", (account,)).fetchone()
    payoff = min(points, row[0]) if row else 0
    if payoff:
        conn.execute("UPDATE debts SET points = points - ? WHERE account = ?", (payoff, account))
        conn.execute("DELETE FROM debts WHERE account = ? AND points = 0", (account,))
    conn.execute(
        "INSERT INTO lots VALUES (?, ?, ?, 0, ?, ?, ?, 0)",
        (seq, account, points - payoff, day, lot["spendable_on"], lot["expires_on"]),
    )
    return points


def _expire(conn: sqlite3.Connection, account: str, day: str) -> int:
    """Close lots whose expiry date has come; returns the points that ran out."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(points - used), 0) FROM lots "
        "WHERE account = ? AND expired = 0 AND expires_on <= ?",
        (account, day),
    ).fetchone()
    if row[0]:
        conn.execute(
            "UPDATE lots SET used = points, expired = 1 "
            "WHERE account = ? AND expired = 0 AND expires_on <= ?",
            (account, day),
        )
    return int(row[1])


_OPEN_LOTS = (
    "SELECT lot_id, points - used FROM lots WHERE account = :account AND expired = 0 "
    "AND points > used AND expires_on > :day ORDER BY expires_on, lot_id"
)
_OPEN_LOTS_SPENDABLE = _OPEN_LOTS.replace("ORDER BY", "AND spendable_on <= :day ORDER BY")


def _consume(
    conn: sqlite3.Connection,
    seq: int,
    account: str,
    day: str,
    points: int,
    *,
    spendable_only: bool,
    record: bool,
) -> int:
    """Spend up to ``points`` from the oldest-expiring open lots; returns what was taken."""
    if points <= 0:
        return 0
    # The lock window holds back fresh points from spending, not from being taken back.
    lots = conn.execute(
        _OPEN_LOTS_SPENDABLE if spendable_only else _OPEN_LOTS, {"account": account, "day": day}
    ).fetchall()
    taken = 0
    for lot_id, remaining in lots:
        step = min(remaining, points - taken)
        conn.execute("UPDATE lots SET used = used + ? WHERE lot_id = ?", (step, lot_id))
        if record:
            conn.execute("INSERT INTO lot_moves VALUES (?, ?, ?)", (seq, lot_id, step))
        taken += step
        if taken == points:
            break
    return taken


def _take_from_lot(conn: sqlite3.Connection, lot_id: int, day: str, points: int) -> int:
    row = conn.execute(
        "SELECT points - used FROM lots WHERE lot_id = ? AND expired = 0", (lot_id,)
    ).fetchone()
    step = min(points, row[0]) if row else 0
    if step:
        conn.execute("UPDATE lots SET used = used + ? WHERE lot_id = ?", (step, lot_id))
    return int(step)


def _restore(conn: sqlite3.Connection, receipt: str, day: str, points: int) -> int:
    """Give redeemed points back to where they came from, in reverse: first what was
    drawn from the HQ-confirmed balance, then the lots, newest move first. Points
    whose lot has expired in the meantime are counted as expired."""
    remote = conn.execute(
        "SELECT d.seq, d.points FROM remote_draws d JOIN receipts r "
        "ON r.op = 'redeem' AND r.receipt = ? AND d.seq = r.seq",
        (receipt,),
    ).fetchone()
    if remote is not None:
        step = min(points, int(remote[1]))
        conn.execute("UPDATE remote_draws SET points = points - ? WHERE seq = ?", (step, remote[0]))
        points -= step
    moves = conn.execute(
        "SELECT m.lot_id, m.points, l.expired FROM lot_moves m "
        "JOIN receipts r ON r.op = 'redeem' AND r.receipt = ? AND m.seq = r.seq "
        "JOIN lots l ON l.lot_id = m.lot_id ORDER BY l.expires_on DESC, m.lot_id DESC",
        (receipt,),
    ).fetchall()
    left, expired = points, 0
    for lot_id, moved, lot_expired in moves:
        step = min(moved, left)
        if lot_expired:
            expired += step
        else:
            conn.execute("UPDATE lots SET used = used - ? WHERE lot_id = ?", (step, lot_id))
        conn.execute(
            "UPDATE lot_moves SET points = points - ? WHERE lot_id = ? AND seq = "
            "(SELECT seq FROM receipts WHERE op = 'redeem' AND receipt = ?)",
            (step, lot_id, receipt),
        )
        left -= step
        if not left:
            break
    return expired


def rebuild(conn: sqlite3.Connection) -> list[int]:
    """Empty the projection and replay the journal into it (inside the caller's
    transaction). Returns the sequence numbers whose effects differ from the ones
    the entry recorded: an empty list means the journal explains every balance."""
    for table in PROJECTION_TABLES:
        conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
    mismatched = []
    for row in Journal(conn).rows_from(1):
        seq, kind, body = row[0], row[2], json.loads(row[4])
        effects = apply(conn, seq, kind, body)
        if effects != body.get("effects", {"delta": 0, "expired": 0}):
            mismatched.append(seq)
    return mismatched
