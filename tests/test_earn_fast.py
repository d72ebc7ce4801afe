"""The earn's fast paths (issue 18) against the slow ones they replace.

Two copies of one till (the same device key, so the same signatures) take the same
earns at the same moments: one through the write path as it is, the other with
the typed body read back from its JSON first, as every earn was applied before.
Their journals (byte for byte) and every projection table must be equal."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import ledger as ledger_module
from agent import lots, projection
from agent.api import earn_on_bridge, router
from agent.config import Config
from agent.daemon import TillAgent
from agent.entries import Body, read_body
from agent.errors import LedgerError
from agent.fields import Line
from agent.http import Request, fixed_answer
from agent.ledger import Ledger
from agent.projection import Effects, apply
from agent.store import PROJECTION_TABLES
from tests.conftest import Clock

PROGRAMME_CARD = "9900000000000009"  # a valid programme card nobody enrolled here


def _slow_apply(conn: sqlite3.Connection, seq: int, typed: Body) -> Effects:
    """The slow path: the body as JSON, read back and applied (and it must read back
    as the very body built)."""
    facts = typed.to_body()
    assert read_body(typed.kind, facts, seq) == typed
    return apply(conn, seq, typed.kind, facts)


def _dump(ledger: Ledger) -> dict[str, list[Any]]:
    conn = ledger.store.conn
    tables = ("journal", "meta", *PROJECTION_TABLES)
    return {
        table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() for table in tables
    }


def _day_of_earns(ledger: Ledger, clock: Clock, cards: list[str]) -> list[Any]:
    """Earns of every shape, replays, refusals, a refund and a redemption between
    them, and expiry two years on; what each answered."""
    answers: list[Any] = []

    def attempt(call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            answers.append(call(*args, **kwargs))
        except LedgerError as refusal:
            answers.append((refusal.code, refusal.message))

    for n in range(30):
        card = [*cards, PROGRAMME_CARD][n % (len(cards) + 1)]
        if n % 3:
            attempt(ledger.earn, card, f"R{n}", amount=1000 + 337 * n)
        else:
            sale = (Line("grocery", 2, 1099 + n), Line("tobacco", 1, 800), Line("fresh", 1, 550))
            attempt(ledger.earn, card, f"R{n}", lines=sale)
        clock.advance(minutes=7)
    attempt(ledger.earn, cards[0], "R1", amount=1337)  # a replay
    attempt(ledger.earn, cards[0], "R1", amount=99)  # same receipt, other content
    attempt(ledger.refund, "R4")
    attempt(ledger.redeem, cards[1], "P1", 100)
    clock.advance(days=800)
    for n in range(5):
        attempt(ledger.earn, cards[n % len(cards)], f"L{n}", amount=5000)
    return answers


def test_earns_applied_as_built_match_earns_read_back(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Ledger.init(tmp_path / "fast", "S001", "T01", clock=clock)
    cards = [
        first.enrol(name=f"Member {n}", phone=f"555000{n:04d}", birthday="1990-03-02").card
        for n in range(3)
    ]
    first.close()
    shutil.copytree(tmp_path / "fast", tmp_path / "slow")
    start = clock.now

    fast = Ledger(tmp_path / "fast", clock=clock)
    fast_answers = _day_of_earns(fast, clock, cards)

    clock.now = start
    monkeypatch.setattr(ledger_module, "apply_typed", _slow_apply)
    slow = Ledger(tmp_path / "slow", clock=clock)
    slow_answers = _day_of_earns(slow, clock, cards)
    try:
        assert fast_answers == slow_answers
        assert any(isinstance(answer, tuple) for answer in fast_answers)  # a refusal
        assert _dump(fast) == _dump(slow)
    finally:
        fast.close()
        slow.close()


def _earn_bodies(cards: list[str]) -> list[dict[str, Any]]:
    """What POSes post to ``/v1/earn``: good sales, replays, and bodies refused."""
    lines = [{"category": "grocery", "qty": 2, "amount": "10.99"}]
    return [
        {"member": cards[0], "receipt": "P1", "amount": "12.34"},
        {"member": cards[1], "receipt": "P2", "lines": lines, "staff": "S1"},
        {"member": PROGRAMME_CARD, "receipt": "P3", "amount": "5.00"},
        {"member": cards[0], "receipt": "P1", "amount": "12.34"},  # a replay
        {"member": cards[0], "receipt": "P1", "amount": "1.00"},  # a receipt conflict
        {"member": cards[2], "receipt": "P4", "amount": 12},  # a number, not a string
        {"member": cards[2], "receipt": "P5"},  # neither amount nor lines
        {"member": cards[2], "receipt": "P6", "amount": "1.00", "extra": 1},
        {"member": "4111111111111111", "receipt": "P7", "amount": "1.00"},  # a bank card
        {"member": cards[2], "receipt": "4111111111111111", "amount": "1.00"},
        {"member": cards[2], "receipt": "P8", "lines": [{"category": "x"}]},
        {"member": cards[2], "receipt": "P9", "amount": "1.00"},
    ]


def test_earns_answered_on_the_bridge_match_the_router(tmp_path: Path, clock: Clock) -> None:
    """``agent.api.earn_on_bridge`` (a POS's earn answered whole on the ledger's
    thread) against the router's ``/v1/earn`` on a copy of the same till: the same
    answers, byte for byte, and the same journal and tables."""
    first = Ledger.init(tmp_path / "bridge", "S001", "T01", clock=clock)
    cards = [first.enrol(name=f"Member {n}", phone=f"555000{n:04d}").card for n in range(3)]
    first.close()
    shutil.copytree(tmp_path / "bridge", tmp_path / "router")
    start = clock.now

    def requests() -> list[Request]:
        return [
            Request("POST", "/v1/earn", {}, json.dumps(body).encode())
            for body in _earn_bodies(cards)
        ]

    bridged = Ledger(tmp_path / "bridge", clock=clock)
    bridge_answers = []
    for request in [*requests(), Request("POST", "/v1/earn", {}, b"{not json")]:
        bridge_answers.append(fixed_answer(earn_on_bridge(bridged, request)))
        clock.advance(minutes=2)

    clock.now = start
    agent = TillAgent(tmp_path / "router", Config())
    agent.ledger = routed = Ledger(tmp_path / "router", clock=clock)
    handle = router(agent)
    router_answers = []
    for request in [*requests(), Request("POST", "/v1/earn", {}, b"{not json")]:
        router_answers.append(fixed_answer(asyncio.run(handle(request))))
        clock.advance(minutes=2)
    try:
        assert bridge_answers == router_answers
        statuses = [answer.split(b" ", 2)[1] for answer in bridge_answers]
        assert statuses.count(b"200") >= 4 and len(set(statuses)) > 2
        assert b"4111111111111111" not in b"".join(bridge_answers)
        assert _dump(bridged) == _dump(routed)
    finally:
        agent._bridge.shutdown()
        bridged.close()
        routed.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 900), st.integers(1, 500), st.booleans(), st.integers(0, 2)),
        max_size=25,
    ),
    st.integers(0, 1000),
)
def test_the_lots_due_are_those_expiry_picks_from_all_open_lots(
    made: list[tuple[int, int, bool, int]], on: int
) -> None:
    """``projection._due_lots`` (the index's lots due on a day, what an earn now
    reads) against ``lots.expiring`` over every open lot (what it read before)."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE lots (lot_id INTEGER PRIMARY KEY, account TEXT, points INTEGER, "
        "used INTEGER, earned_on TEXT, spendable_on TEXT, expires_on TEXT, expired INTEGER)"
    )
    conn.execute("CREATE INDEX lots_account_expires_on ON lots (account, expires_on)")
    start = dt.date(2026, 1, 1)
    for lot_id, (offset, points, expired, owner) in enumerate(made):
        expires = (start + dt.timedelta(days=offset)).isoformat()
        conn.execute(
            "INSERT INTO lots VALUES (?, ?, ?, 0, '2025-01-01', '2025-01-01', ?, ?)",
            (lot_id, f"A{owner}", points, expires, int(expired)),
        )
    day = (start + dt.timedelta(days=on)).isoformat()
    for account in ("A0", "A1", "A2"):
        due = projection._due_lots(conn, account, day)  # in the index's order
        picked = lots.expiring(projection._open_lots(conn, account), day)
        assert sorted(due, key=repr) == sorted(picked, key=repr)
