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

from agent import lots
from agent.entries import (
    Adjust,
    Body,
    CardReplace,
    Consent,
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
from agent.privacy import disclosed
from agent.privacy_tables import member_key
from agent.store import PROJECTION_TABLES

Effects = dict[str, int]


def apply(conn: sqlite3.Connection, seq: int, kind: str, body: dict[str, Any]) -> Effects:
    """Write entry ``seq`` into the projection; ``unknown_entry_kind`` for a kind this
    code does not know, ``malformed_entry`` for a body not of its kind's shape."""
    known = kind_of(kind)
    if known is None:
        raise LedgerError("unknown_entry_kind", f"journal entry {seq}: unknown kind {kind!r}")
    return apply_typed(conn, seq, read_body(known, body, seq))


def apply_typed(conn: sqlite3.Connection, seq: int, typed: Body) -> Effects:
    """``apply`` of a body already typed: the ledger's write path hands over the body
    it just built rather than have it read back from its JSON (issue 18; the same
    rows: tests/test_earn_fast.py)."""
    match typed:
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
        case Consent() as consent:
            conn.execute(
                "UPDATE members SET consent_marketing = ? WHERE member_id = ?",
                (consent.marketing, consent.member_id),
            )
            return {"delta": 0, "expired": 0}
        case _:
            # ``init`` names the device and its key, ``key_rotate`` hands the journal to
            # a new key (agent.rotation): neither changes a balance.
            return {"delta": 0, "expired": 0}


def _lot(lot: Lot | None) -> dict[str, str] | None:
    return None if lot is None else {"spendable_on": lot.spendable_on, "expires_on": lot.expires_on}


def _enrol(conn: sqlite3.Connection, seq: int, body: Enrol) -> Effects:
    # A sealed enrolment is opened with the member's key; once the key is destroyed
    # (erased, agent.privacy_tables) its personal fields stay empty for good.
    key = member_key(conn, body.member.member_id)
    member = disclosed(body.member, key)
    row = dataclasses.asdict(member)
    del row["sealed"]
    if member.sealed is not None and key is None:
        # Erased: no name (the column is NOT NULL) and off every list.
        row["name"], row["consent_marketing"] = "", 0
    conn.execute(
        "INSERT INTO members (member_id, name, phone_key, phone_last4, birthday, gender, "
        "district, household, consent_marketing, enrolled_at, enrolled_store, enrolled_till, "
        "enrolled_by) VALUES (:member_id, :name, :phone_key, :phone_last4, :birthday, "
        ":gender, :district, :household, :consent_marketing, :enrolled_at, :enrolled_store, "
        ":enrolled_till, :enrolled_by)",
        # Entries written before issue 12 carry the number's last four digits; later
        # ones do not (the counter never needed them).
        row,
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
        _take_back(conn, account, day, receipt, taken)
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
# The decisions are agent.lots's (shared with the simulated till); these apply them.

_LOT = "SELECT lot_id, points - used, spendable_on, expires_on FROM lots"


def _open_lots(conn: sqlite3.Connection, account: str) -> list[lots.Lot]:
    rows = conn.execute(f"{_LOT} WHERE account = ? AND expired = 0", (account,))
    return [lots.Lot(*row) for row in rows]


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
    payoff = lots.payoff(points, row[0] if row else 0)
    if payoff:
        conn.execute("UPDATE debts SET points = points - ? WHERE account = ?", (payoff, account))
        conn.execute("DELETE FROM debts WHERE account = ? AND points = 0", (account,))
    conn.execute(
        "INSERT INTO lots VALUES (?, ?, ?, 0, ?, ?, ?, 0)",
        (seq, account, points - payoff, day, lot["spendable_on"], lot["expires_on"]),
    )
    return points


def _due_lots(conn: sqlite3.Connection, account: str, day: str) -> list[lots.Lot]:
    """The open lots ``lots.expiring`` can pick on ``day``, found by the
    ``(account, expires_on)`` index: an earn reads none of a regular's many open
    lots that are not due (issue 18), rather than all of them."""
    rows = conn.execute(
        f"{_LOT} WHERE account = ? AND expires_on <= ? AND expired = 0", (account, day)
    )
    return [lots.Lot(*row) for row in rows]


def _expire(conn: sqlite3.Connection, account: str, day: str) -> int:
    """Close lots whose expiry date has come; returns the points that ran out."""
    gone = lots.expiring(_due_lots(conn, account, day), day)
    conn.executemany(
        "UPDATE lots SET used = points, expired = 1 WHERE lot_id = ?",
        [(lot.lot_id,) for lot in gone],
    )
    return sum(lot.left for lot in gone)


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
    steps = lots.consume(_open_lots(conn, account), points, day, spendable_only=spendable_only)
    _use(conn, steps)
    if record:
        conn.executemany(
            "INSERT INTO lot_moves VALUES (?, ?, ?)", [(seq, lot_id, n) for lot_id, n in steps]
        )
    return sum(n for _, n in steps)


def _use(conn: sqlite3.Connection, steps: list[lots.Step]) -> None:
    conn.executemany("UPDATE lots SET used = used + ? WHERE lot_id = ?", [(n, i) for i, n in steps])


def _take_back(conn: sqlite3.Connection, account: str, day: str, receipt: str, taken: int) -> None:
    """A refund takes back ``taken`` points: its own lot first, then the others, and a
    debt for what was already spent (``agent.lots.take_back``)."""
    earn = conn.execute(
        "SELECT seq FROM receipts WHERE op = 'earn' AND receipt = ?", (receipt,)
    ).fetchone()
    row = (
        conn.execute(f"{_LOT} WHERE lot_id = ? AND expired = 0", (earn[0],)).fetchone()
        if earn
        else None
    )
    own = lots.Lot(*row) if row else None
    plan = lots.take_back(own, _open_lots(conn, account), taken, day)
    _use(conn, ([(own.lot_id, plan.own)] if own and plan.own else []) + plan.steps)
    if plan.debt:
        conn.execute(
            "INSERT INTO debts VALUES (?, ?) "
            "ON CONFLICT(account) DO UPDATE SET points = points + excluded.points",
            (account, plan.debt),
        )


def _restore(conn: sqlite3.Connection, receipt: str, day: str, points: int) -> int:
    """Give redeemed points back to where they came from (``agent.lots.restore``);
    returns those whose lot has expired in the meantime."""
    remote = conn.execute(
        "SELECT d.seq, d.points FROM remote_draws d JOIN receipts r "
        "ON r.op = 'redeem' AND r.receipt = ? AND d.seq = r.seq",
        (receipt,),
    ).fetchone()
    moves = [
        lots.Move(lot_id, moved, expires_on, bool(expired))
        for lot_id, moved, expires_on, expired in conn.execute(
            "SELECT m.lot_id, m.points, l.expires_on, l.expired FROM lot_moves m "
            "JOIN receipts r ON r.op = 'redeem' AND r.receipt = ? AND m.seq = r.seq "
            "JOIN lots l ON l.lot_id = m.lot_id",
            (receipt,),
        )
    ]
    plan = lots.restore(int(remote[1]) if remote else 0, moves, points)
    if plan.remote:
        conn.execute(
            "UPDATE remote_draws SET points = points - ? WHERE seq = ?", (plan.remote, remote[0])
        )
    for move, step in plan.steps:
        if not move.expired:
            conn.execute("UPDATE lots SET used = used - ? WHERE lot_id = ?", (step, move.lot_id))
        conn.execute(
            "UPDATE lot_moves SET points = points - ? WHERE lot_id = ? AND seq = "
            "(SELECT seq FROM receipts WHERE op = 'redeem' AND receipt = ?)",
            (step, move.lot_id, receipt),
        )
    return plan.expired


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
