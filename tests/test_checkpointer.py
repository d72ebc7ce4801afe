"""The background WAL checkpointer (agent.checkpointer, issue 18): it copies the
WAL while earns commit, stops cleanly, and a process killed with SIGKILL while
it runs loses no acknowledged earn and leaves a journal that verifies."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from agent.audit import verify_ledger
from agent.ledger import Ledger
from tests.crash_helpers import CARDS, assert_acknowledged_kept, kill_writers, make_state, receipts


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return make_state(tmp_path)


def _autocheckpoint(ledger: Ledger) -> int:
    return int(ledger.store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_checkpoints_beside_the_earns_and_stops_cleanly(state: Path) -> None:
    ledger = Ledger(state)
    try:
        checkpointer = ledger.start_checkpointer()
        assert ledger.start_checkpointer() is checkpointer  # one thread per ledger
        assert _autocheckpoint(ledger) == 10_000
        for number in range(350):
            ledger.earn(CARDS[number % 2], f"C{number}", amount=100 + number)
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Every 100 commits, off the earns' thread (a slow round may take two wake-ups).
        assert checkpointer.checkpoints >= 2
        ledger.stop_checkpointer()
        assert not checkpointer.running
        assert _autocheckpoint(ledger) == 1_000  # commits checkpoint themselves again
        ledger.earn(CARDS[0], "after", amount=500)  # and the ledger still writes
    finally:
        ledger.close()
    ledger = Ledger(state)
    try:
        assert len(receipts(state)) == 351
        assert verify_ledger(ledger).ok
    finally:
        ledger.close()


def test_closing_the_ledger_stops_its_checkpointer(state: Path) -> None:
    ledger = Ledger(state)
    checkpointer = ledger.start_checkpointer()
    ledger.earn(CARDS[0], "R1", amount=100)
    ledger.close()
    assert not checkpointer.running
    with sqlite3.connect(state / "ledger.db") as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_killed_while_checkpointing_loses_nothing_acknowledged(state: Path) -> None:
    # Long enough for a few hundred earns a round: checkpoints run, and some are cut.
    acknowledged = kill_writers(state, random.Random(18), "K", (0.2, 0.8), "checkpointer")
    assert len(acknowledged) > 200  # enough commits for checkpoints to have run
    assert_acknowledged_kept(state, acknowledged)
