"""Issue #12, the agent's start-up: a journal edited where HQ has not seen it
yet, and two agents on one state directory or one socket. The real daemon as a
subprocess on a real SQLite file, its API over the real Unix socket."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.chain import canonical
from agent.client import AgentError
from agent.errors import LedgerError
from agent.ledger import Ledger
from tests.conftest import REPO
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill

pytestmark = pytest.mark.timeout(120)


def _command(till: SimulatedTill, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tillpoints.cli", *args],
        env=till.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _journal(till: SimulatedTill) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(till.state / "ledger.db")
    try:
        return conn.execute("SELECT seq, body, hash FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.fixture
def edited(tmp_path: Path) -> Iterator[SimulatedTill]:
    """A till HQ acknowledged up to entry 3, whose unsynced entry 4 was edited
    with sqlite3 (the amount of a sale raised; the stored hash left alone)."""
    till = SimulatedTill(tmp_path)
    ledger = Ledger(till.state)
    for receipt in ("R1", "R2", "R3"):
        ledger.earn(DEMO_CARD, receipt, amount=1000)
    ledger.close()
    rows = _journal(till)
    body = json.loads(rows[3][1])
    body["amount"] = body["amount"] * 100
    conn = sqlite3.connect(till.state / "ledger.db")
    with conn:
        conn.execute(
            "INSERT INTO sync_state VALUES ('acked_seq', '3'), ('acked_hash', ?)", (rows[2][2],)
        )
        conn.execute("UPDATE journal SET body = ? WHERE seq = 4", (canonical(body).decode(),))
    conn.close()
    yield till
    till.close()


def test_an_agent_on_an_edited_journal_refuses_writes_and_says_why(
    edited: SimulatedTill,
) -> None:
    till = edited
    before = _journal(till)
    till.start()
    status = till.client.get("/v1/status")
    assert status["journal_ok"] is False
    problem = status["journal_problem"]
    assert (problem["error"], problem["first_bad_seq"]) == ("journal_unverified", 4)
    assert "hash mismatch" in problem["reason"]
    with pytest.raises(AgentError) as refused:
        till.client.post("/v1/earn", {"member": DEMO_CARD, "receipt": "R9", "amount": "5.00"})
    assert (refused.value.http_status, refused.value.code) == (503, "journal_unverified")
    assert "entry 4" in str(refused.value)
    assert till.client.get(f"/v1/members/{DEMO_CARD}")["member_id"]  # reads still work
    done = _command(till, "status", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["journal_ok"] is False
    human = _command(till, "status")
    assert "JOURNAL DAMAGED" in human.stdout and "journal_unverified" in human.stdout
    assert till.stop() == 0
    offline = json.loads(_command(till, "status", "--json").stdout)  # no agent: same check
    assert offline["agent"] == "not running" and offline["journal_problem"]["first_bad_seq"] == 4
    assert _journal(till) == before


def test_a_journal_cut_below_its_recorded_head_is_caught_at_start(tmp_path: Path) -> None:
    till = SimulatedTill(tmp_path)
    ledger = Ledger(till.state)
    ledger.earn(DEMO_CARD, "R1", amount=1000)
    ledger.close()
    conn = sqlite3.connect(till.state / "ledger.db")
    with conn:
        conn.execute("DELETE FROM journal WHERE seq = 3")
    conn.close()
    till.start()
    try:
        problem = till.client.get("/v1/status")["journal_problem"]
        assert problem["first_bad_seq"] == 3 and "truncated" in problem["reason"]
        with pytest.raises(AgentError) as refused:
            till.client.post("/v1/earn", {"member": DEMO_CARD, "receipt": "R2", "amount": "1.00"})
        assert refused.value.code == "journal_unverified"
    finally:
        till.close()


def test_a_whole_journal_starts_writable(till: SimulatedTill) -> None:
    status = till.client.get("/v1/status")
    assert status["journal_ok"] is True and "journal_problem" not in status
    till.client.post("/v1/earn", {"member": DEMO_CARD, "receipt": "R1", "amount": "5.00"})


# -- one agent per state directory, and per socket ----------------------------------------


def test_a_second_agent_on_the_same_state_exits_and_the_first_keeps_serving(
    till: SimulatedTill,
) -> None:
    assert till.proc is not None
    second = _command(till, "agent", "--json")
    assert second.returncode == 1, second.stderr
    answer = json.loads(second.stdout)
    assert answer["error"] == "agent_running" and str(till.proc.pid) in answer["message"]
    assert till.client.get("/v1/status")["agent"] == "running"
    assert (till.root / "run" / "agent.sock").exists()
    lock = till.state / "agent.lock"
    assert (os.stat(lock).st_mode & 0o777) == 0o600
    assert till.stop() == 0
    assert not (till.root / "run" / "agent.sock").exists()
    assert lock.exists()  # the lock file stays; the lock went with the process


def test_an_agent_never_takes_over_a_socket_another_agent_serves(tmp_path: Path) -> None:
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first, second = SimulatedTill(tmp_path / "first"), SimulatedTill(tmp_path / "second")
    socket_path = first.root / "run" / "agent.sock"
    # Another state directory, configured (by mistake) with the first one's socket.
    second.config.write_text(
        second.config.read_text().replace(str(second.root / "run" / "agent.sock"), str(socket_path))
    )
    try:
        first.start()
        done = _command(second, "agent", "--json")
        assert done.returncode == 1 and json.loads(done.stdout)["error"] == "socket_in_use"
        assert first.client.get("/v1/status")["agent"] == "running"
        # A socket left by an agent that died is taken over, as before.
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert socket_path.exists()
        second.start()
        ledger = Ledger(second.state)
        assert first.client.get("/v1/status")["device_id"] == ledger.device_id  # the second's
        ledger.close()
    finally:
        second.close()
        first.close()


# -- the check itself, on real SQLite files ------------------------------------------------


def _acknowledge(state: Path, seq: int) -> None:
    conn = sqlite3.connect(state / "ledger.db")
    with conn:
        digest = conn.execute("SELECT hash FROM journal WHERE seq = ?", (seq,)).fetchone()[0]
        conn.execute("DELETE FROM sync_state WHERE key IN ('acked_seq', 'acked_hash')")
        conn.execute(
            "INSERT INTO sync_state VALUES ('acked_seq', ?), ('acked_hash', ?)", (str(seq), digest)
        )
    conn.close()


def test_key_rotations_anywhere_in_the_unsynced_part_verify(tmp_path: Path) -> None:
    from agent.daemon import check_journal
    from agent.integrity import check_unsynced
    from agent.rotation import rotate_device_key

    state = tmp_path / "state"
    ledger = Ledger.init(state, "S001", "T01")
    member = ledger.enrol(name="Bo", phone="0622222222").member_id
    ledger.earn(member, "K1", amount=1000)
    ledger.close()
    rotated = int(str(rotate_device_key(state)["seq"]))
    ledger = Ledger(state)
    ledger.earn(member, "K2", amount=1000)
    last = ledger.head()[0]
    for acked in (0, 1, rotated - 1, rotated, last):
        if acked:
            _acknowledge(state, acked)
        report = check_unsynced(ledger.store.conn)
        assert report.ok and report.head_seq == last, (acked, report)
        check_journal(ledger)
        assert ledger.write_refusal is None
    _acknowledge(state, rotated - 1)
    conn = sqlite3.connect(state / "ledger.db")
    with conn:  # the acknowledged entry itself, edited
        conn.execute(
            "UPDATE journal SET ts = '2020-01-01T00:00:00.000+00:00' WHERE seq = ?", (rotated - 1,)
        )
    conn.close()
    report = check_unsynced(ledger.store.conn)
    assert (report.ok, report.first_bad_seq) == (False, rotated - 1)
    check_journal(ledger)
    with pytest.raises(LedgerError) as refused:
        ledger.earn(member, "K3", amount=1000)
    assert (refused.value.code, refused.value.exit_status) == ("journal_unverified", 4)
    ledger.close()
