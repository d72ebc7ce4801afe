"""The background WAL checkpointer (agent.checkpointer, issue 18): it copies the
WAL while earns commit, stops cleanly, and a process killed with SIGKILL while
it runs loses no acknowledged earn and leaves a journal that verifies."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.audit import verify_ledger
from agent.ledger import Ledger
from tests.conftest import REPO
from tests.test_crash import CARDS, _env, _receipts


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "till"
    ledger = Ledger.init(path, "S001", "T01")
    for number, card in enumerate(CARDS):
        ledger.enrol(name=f"M{number}", phone=f"555000{number:04d}", card=card)
    ledger.close()
    return path


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
        assert len(_receipts(state)) == 351
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
    rng = random.Random(18)
    acknowledged: list[str] = []
    for round_number in range(8):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.crash_writer",
                str(state),
                f"K{round_number}",
                "checkpointer",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_env(state),
        )
        try:
            assert proc.stdout is not None
            acknowledged.append(proc.stdout.readline().strip())
            # Long enough for a few hundred earns: checkpoints run, and some are cut.
            time.sleep(rng.uniform(0.2, 0.8))
        finally:
            proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate()
        acknowledged.extend(line for line in rest.splitlines() if line)
    stored = _receipts(state)
    assert len(stored) == len(set(stored)), "an earn was recorded twice"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"acknowledged earns lost: {sorted(missing)[:5]}"
    assert len(acknowledged) > 200  # enough commits for checkpoints to have run
    ledger = Ledger(state)
    try:
        report = verify_ledger(ledger)
        assert report.ok, report
    finally:
        ledger.close()
