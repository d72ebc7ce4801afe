"""The real daemon as a subprocess: readers on a pseudo-terminal, the local API on a
Unix socket, sd_notify on a real NOTIFY_SOCKET, SIGTERM under load."""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.client import AgentClient, AgentError
from agent.errors import LedgerError
from tests.conftest import REPO
from tillpoints.simulated_till import DEMO_CARD as MEMBER_CARD
from tillpoints.simulated_till import SimulatedTill

pytestmark = pytest.mark.timeout(120)


def collect_events(client: AgentClient, into: queue.Queue[tuple[str, dict]]) -> threading.Thread:
    def listen() -> None:
        try:
            for event in client.events(timeout=30):
                into.put(event)
        except (OSError, LedgerError):
            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    return thread


def next_event(events: queue.Queue[tuple[str, dict]], name: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        event, data = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if event == name:
            return data
    raise AssertionError(f"no {name} event")


def test_ready_watchdog_and_socket_permissions(till: SimulatedTill) -> None:
    assert "READY=1" in till.wait_notify("READY=1")
    till.wait_notify("WATCHDOG=1", timeout=5)
    mode = stat.S_IMODE(os.stat(till.root / "run" / "agent.sock").st_mode)
    assert mode == 0o660
    status = till.client.get("/v1/status")
    assert {"store", "till", "readers", "journal_head", "unsynced"} <= set(status)
    assert status["readers"][0]["state"] in ("open", "grabbed")
    assert status["journal_head"]["seq"] == 2


def test_a_swipe_on_the_pty_arrives_as_a_scan_event(till: SimulatedTill) -> None:
    events: queue.Queue[tuple[str, dict]] = queue.Queue()
    collect_events(till.client, events)
    next_event(events, "hello")
    till.swipe(f";{MEMBER_CARD}=3012?\r".encode())
    scan = next_event(events, "scan")
    assert scan["kind"] == "member" and scan["card"] == MEMBER_CARD
    assert scan["member"]["name"] == "Ann" and scan["member"]["balance"] == 100
    till.swipe(b";4111111111111111=2512?\r")
    refused = next_event(events, "scan")
    assert refused == {"kind": "error", "error": "payment_card", "message": refused["message"]}
    assert "4111" not in json.dumps(refused)


def test_an_earn_over_the_socket_lands_in_the_journal(till: SimulatedTill) -> None:
    result = till.client.post(
        "/v1/earn",
        {
            "member": MEMBER_CARD,
            "receipt": "R1",
            "lines": [{"category": "grocery", "qty": 2, "amount": "12.30"}],
            "staff": "c1",
        },
    )
    assert result["points"] == 12 and result["replayed"] is False
    conn = sqlite3.connect(till.state / "ledger.db")
    body = json.loads(conn.execute("SELECT body FROM journal WHERE seq = 3").fetchone()[0])
    staff = conn.execute("SELECT staff FROM journal WHERE seq = 3").fetchone()[0]
    conn.close()
    assert body["receipt"] == "R1" and staff == "c1"
    member = till.client.get(f"/v1/members/{MEMBER_CARD}")
    assert {"member_id", "name", "tier", "balance"} <= set(member) and member["balance"] == 112


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/v1/earn",
            {"member": MEMBER_CARD, "receipt": "R", "amount": "1e3"},
            400,
            "invalid_amount",
        ),
        ("/v1/earn", {"member": MEMBER_CARD, "receipt": "R"}, 400, "invalid_body"),
        (
            "/v1/earn",
            {"member": MEMBER_CARD, "receipt": "R", "amount": "1.00", "x": "1"},
            400,
            "invalid_body",
        ),
        (
            "/v1/earn",
            {"member": MEMBER_CARD, "receipt": "R", "lines": [{"category": "a"}]},
            400,
            "invalid_line",
        ),
        (
            "/v1/redeem",
            {"member": MEMBER_CARD, "receipt": "P", "points": "5000"},
            409,
            "insufficient_points",
        ),
        (
            "/v1/adjust",
            {"member": MEMBER_CARD, "points": "5", "reason": "x"},
            409,
            "supervisor_required",
        ),
        (
            "/v1/card-replace",
            {"member": MEMBER_CARD, "card": "9900568732746027", "staff": "nobody", "pin": "1234"},
            409,
            "bad_pin",
        ),
        ("/v1/nothing", {}, 404, "not_found"),
    ],
)
def test_api_errors_have_codes_and_write_nothing(
    till: SimulatedTill, path: str, body: dict, status: int, code: str
) -> None:
    before = till.client.get("/v1/status")["journal_head"]["seq"]
    with pytest.raises(AgentError) as caught:
        till.client.post(path, body)
    assert (caught.value.http_status, caught.value.code) == (status, code)
    assert till.client.get("/v1/status")["journal_head"]["seq"] == before


def test_malformed_http_and_oversized_bodies(till: SimulatedTill) -> None:
    import socket as sockets

    with sockets.socket(sockets.AF_UNIX) as sock:
        sock.connect(str(till.root / "run" / "agent.sock"))
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert b"400" in sock.recv(4096).split(b"\r\n")[0]
    with pytest.raises(AgentError) as caught:
        till.client.post("/v1/earn", {"member": "x" * 300_000, "receipt": "R"})
    assert caught.value.http_status == 413
    assert till.client.get("/v1/openapi.json")["openapi"].startswith("3.")


def test_supervisor_pin_rate_limit_and_card_replace(till: SimulatedTill) -> None:
    till.add_staff("sup1", "supervisor", "4321")
    body = {"member": MEMBER_CARD, "card": "9900568732746027", "staff": "sup1"}
    for _ in range(5):
        with pytest.raises(AgentError) as caught:
            till.client.post("/v1/card-replace", {**body, "pin": "0000"})
        assert caught.value.code == "bad_pin"
    with pytest.raises(AgentError) as caught:
        till.client.post("/v1/card-replace", {**body, "pin": "4321"})
    assert (caught.value.http_status, caught.value.code) == (429, "pin_locked")
    conn = sqlite3.connect(till.state / "ledger.db")
    conn.execute("UPDATE staff SET locked_until = 0")
    conn.commit()
    row = conn.execute("SELECT pin_hash FROM staff").fetchone()
    conn.close()
    assert "4321" not in row[0]
    result = till.client.post("/v1/card-replace", {**body, "pin": "4321"})
    assert result["card"] == "9900568732746027"


def test_sigterm_under_load_loses_nothing_acknowledged(till: SimulatedTill) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()

    def hammer(prefix: str) -> None:
        number = 0
        while not stop.is_set():
            receipt = f"{prefix}{number}"
            try:
                till.client.post(
                    "/v1/earn", {"member": MEMBER_CARD, "receipt": receipt, "amount": "1.00"}
                )
            except LedgerError:
                return
            acknowledged.append(receipt)
            number += 1

    threads = [threading.Thread(target=hammer, args=(f"L{n}-",)) for n in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    began = time.monotonic()
    assert till.proc is not None
    till.proc.terminate()
    code = till.proc.wait(10)
    elapsed = time.monotonic() - began
    stop.set()
    for thread in threads:
        thread.join(10)
    till.wait_notify("STOPPING=1")
    assert code == 0 and elapsed < 5
    assert len(acknowledged) > 10
    conn = sqlite3.connect(till.state / "ledger.db")
    stored = {json.loads(row[0]).get("receipt") for row in conn.execute("SELECT body FROM journal")}
    conn.close()
    assert set(acknowledged) <= stored
    assert not (till.root / "run" / "agent.sock").exists()


def run_agent_once(till: SimulatedTill) -> subprocess.CompletedProcess[str]:
    till.close()
    return subprocess.run(
        [sys.executable, "-m", "tillpoints.cli", "agent", "--json"],
        env=till.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_broken_configuration_is_refused(tmp_path: Path) -> None:
    till = SimulatedTill(tmp_path)
    till.config.write_text(till.config.read_text().replace("kind =", "knd = 1\nkind ="))
    done = run_agent_once(till)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"] == "invalid_config" and "knd" in done.stdout


def test_a_corrupt_database_is_refused(tmp_path: Path) -> None:
    till = SimulatedTill(tmp_path)
    db = till.state / "ledger.db"
    data = bytearray(db.read_bytes())
    data[100:4096] = os.urandom(3996)
    db.write_bytes(bytes(data))
    for leftover in ("ledger.db-wal", "ledger.db-shm"):
        (till.state / leftover).unlink(missing_ok=True)
    done = run_agent_once(till)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"] in ("database_corrupt", "storage_error")


def test_a_missing_ledger_is_never_created(tmp_path: Path) -> None:
    till = SimulatedTill(tmp_path, members=False)
    done = run_agent_once(till)
    assert done.returncode == 1 and json.loads(done.stdout)["error"] == "not_initialised"
    assert not (till.state / "ledger.db").exists()


def test_status_command_with_and_without_the_agent(till: SimulatedTill) -> None:
    def status() -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "tillpoints.cli", "status", "--json"],
            env=till.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    running = status()
    assert running["agent"] == "running" and running["readers"][0]["connected"] is True
    assert running["clock_ok"] is True and running["unsynced"] == 2
    till.stop()
    stopped = status()
    assert stopped["agent"] == "not running" and stopped["readers"] == []
    assert stopped["journal_head"] == running["journal_head"]
    human = subprocess.run(
        [sys.executable, "-m", "tillpoints.cli", "status"],
        env=till.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "not yet synced" in human.stdout and "last sync: never" in human.stdout


def test_a_finished_sync_is_pushed_as_an_event(till: SimulatedTill) -> None:
    events: queue.Queue[tuple[str, dict]] = queue.Queue()
    collect_events(till.client, events)
    next_event(events, "hello")
    time.sleep(2.5)  # the agent has seen the sync state once
    conn = sqlite3.connect(till.state / "ledger.db")
    with conn:  # what `tillpoints sync` records after a verified ack and a delta
        conn.execute("INSERT INTO sync_state VALUES ('acked_seq', '2')")
        conn.execute("INSERT INTO sync_state VALUES ('last_download', '2026-11-25T01:00:00+00:00')")
    conn.close()
    synced = next_event(events, "sync")
    assert synced == {"unsynced": 0, "last_sync": "2026-11-25T01:00:00+00:00"}
