"""The points-in-lots policy, as values: which lots an earning, an expiry, a
redemption or a refund touches and by how much, and what is left as debt.

Two callers apply the answers: ``agent.projection`` with SQL inside the ledger's
transaction, ``sync.hq.insight.till_model`` in memory for simulations at scale.
Keeping the decisions here (and only the writing there) is what makes the
simulated till's effects the ledger's own, which a hypothesis test checks
(tests/test_lots.py).

The rules, once:

- an earning first pays off the account's debt; the rest becomes a lot that
  expires on its ``expires_on`` and may be spent from its ``spendable_on``;
- lots whose expiry date has come run out whole (``expiring``);
- points are spent from the oldest-expiring open lot first, ties by lot id
  (``consume``); a redemption spends only spendable lots, a take-back any;
- a refund takes its points back from the receipt's own lot first, then like a
  spending, and whatever was already spent elsewhere becomes debt (``take_back``);
- a refunded redemption gives its points back in reverse: first what was drawn
  from HQ's confirmed balance, then its lot moves newest-expiry first; points
  whose lot has expired meanwhile count as expired (``restore``).

Dates are ISO strings (``YYYY-MM-DD``): they compare as the days they name.
The ``*_rows`` entry points decide the same on plain tuples (``LotRow``) whose
days may be anything that compares as days do (the simulated till keeps its
millions of lots as day ordinals in flat arrays, issue 18); the ``Lot`` entry
points are those on each lot's row (tests/test_lots.py checks both against the
policy as it was first written).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Lot:
    """An open lot: ``left`` points (earned minus used) not yet expired."""

    lot_id: int
    left: int
    spendable_on: str
    expires_on: str


@dataclass(frozen=True, slots=True)
class Move:
    """Points a redemption took from one lot, as a refund finds them later."""

    lot_id: int
    points: int
    expires_on: str
    expired: bool


Step = tuple[int, int]  # (lot_id, points): what to take from (or give to) one lot
# An open lot as a plain tuple: (expires_on, lot_id, left, spendable_on). Its order
# sorts lots as spending takes them (oldest expiry first, ties by lot id).
LotRow = tuple[Any, int, int, Any]


def row(lot: Lot) -> LotRow:
    return (lot.expires_on, lot.lot_id, lot.left, lot.spendable_on)


@dataclass(frozen=True, slots=True)
class TakeBack:
    """What a refund takes back: ``own`` from the receipt's lot, ``steps`` from the
    others, and the ``debt`` of points that were already spent."""

    own: int
    steps: list[Step]
    debt: int


@dataclass(frozen=True, slots=True)
class Restore:
    """Where a refunded redemption's points go: ``remote`` back to HQ's confirmed
    balance, ``steps`` back to lots (``Move``, points), ``expired`` of those to
    lots that have run out (nothing to give back to)."""

    remote: int
    steps: list[tuple[Move, int]]
    expired: int


def payoff(points: int, debt: int) -> int:
    """Of an earning of ``points``, what pays off ``debt`` first (the rest is the lot)."""
    return min(points, debt) if points > 0 else 0


def expiring(lots: Iterable[Lot], day: str) -> list[Lot]:
    """The open lots that run out on ``day``: their expiry date has come."""
    return [lot for lot in lots if lot.expires_on <= day]


def expiring_rows(rows: Iterable[LotRow], day: Any) -> list[LotRow]:
    """``expiring`` on rows."""
    return [lot for lot in rows if lot[0] <= day]


def consume(lots: Iterable[Lot], points: int, day: str, *, spendable_only: bool) -> list[Step]:
    """Spend up to ``points`` from the oldest-expiring open lots (ties by lot id).
    The lock window holds fresh points back from spending (``spendable_only``), not
    from being taken back. The steps add up to less than ``points`` when the lots
    hold less."""
    return consume_rows(map(row, lots), points, day, spendable_only=spendable_only)


def consume_rows(
    rows: Iterable[LotRow], points: int, day: Any, *, spendable_only: bool
) -> list[Step]:
    """``consume`` on rows."""
    if points <= 0:
        return []
    usable = sorted(
        lot for lot in rows if lot[2] > 0 and lot[0] > day and (not spendable_only or lot[3] <= day)
    )
    steps: list[Step] = []
    wanted = points
    for _, lot_id, left, _ in usable:
        step = min(left, wanted)
        steps.append((lot_id, step))
        wanted -= step
        if not wanted:
            break
    return steps


def take_back(own: Lot | None, lots: Iterable[Lot], points: int, day: str) -> TakeBack:
    """A refund takes back ``points``: from the receipt's own lot (``own``, if it is
    still open) first, then from the other open ``lots`` as a spending would, and
    what no lot holds any more (it was spent) becomes debt."""
    return take_back_rows(None if own is None else row(own), map(row, lots), points, day)


def take_back_rows(own: LotRow | None, rows: Iterable[LotRow], points: int, day: Any) -> TakeBack:
    """``take_back`` on rows."""
    first = min(points, own[2]) if own is not None and points > 0 else 0
    others = (lot for lot in rows if own is None or lot[1] != own[1])
    steps = consume_rows(others, points - first, day, spendable_only=False)
    return TakeBack(first, steps, points - first - sum(step for _, step in steps))


def restore(remote: int, moves: Sequence[Move], points: int) -> Restore:
    """Give ``points`` of a redemption back where they came from, in reverse: first
    the ``remote`` draw on HQ's confirmed balance, then the lot ``moves``, newest
    expiry first (ties by lot id, highest first)."""
    from_remote = min(points, remote) if remote > 0 else 0
    left = points - from_remote
    steps: list[tuple[Move, int]] = []
    for move in sorted(moves, key=lambda m: (m.expires_on, m.lot_id), reverse=True):
        if not left:
            break
        step = min(move.points, left)
        steps.append((move, step))
        left -= step
    return Restore(from_remote, steps, sum(step for move, step in steps if move.expired))
