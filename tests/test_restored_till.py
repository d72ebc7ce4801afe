"""Issue 12: a till that `sync` found restored from a backup or cloned remembers it
and records nothing more (nothing it recorded could ever be uploaded: HQ froze the
device). Real processes: HQ, `tillpoints sync`, `tillpoints earn`, the agent."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.client import AgentError
from agent.ledger import Ledger
from sync.hq.stores import open_store
from tests.sync_helpers import REPO, cli, register_till, running_hq
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill

CODE = "till_restored_from_backup"


def _run(state: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    command = [sys.executable, "-m", "tillpoints.cli", "--state", str(state), "--config", "/x"]
    done = subprocess.run(
        [*command, *args, "--json"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _journal(state: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(state / "ledger.db")
    try:
        return conn.execute("SELECT seq, hash FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()


def _earn(state: Path, receipt: str) -> tuple[int, dict[str, Any], str]:
    return _run(state, "earn", "--member", DEMO_CARD, "--receipt", receipt, "--amount", "5.00")


def test_a_clone_refuses_every_write_once_sync_found_it(tmp_path: Path) -> None:
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    assert cli(None, "hq", "init", "--db", hq_url)[0] == 0
    original = tmp_path / "original"
    original.mkdir()
    SimulatedTill(original).close()  # a till with Ann's card enrolled
    till = original / "state"
    clone_root = tmp_path / "clone"
    clone_root.mkdir()
    clone = SimulatedTill(clone_root, members=False)
    hq = open_store(hq_url)
    try:
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            register_till(server, hq, till)
            assert _earn(till, "R1")[0] == 0
            assert _run(till, "sync")[0] == 0
            shutil.copytree(till, clone.state)
            assert _earn(till, "R2")[0] == 0
            assert _run(till, "sync")[0] == 0
            clone.start()
            before_sync = clone.client.post(
                "/v1/earn", {"member": DEMO_CARD, "receipt": "C1", "amount": "5.00"}
            )
            assert before_sync["points"] == 5  # not known yet: it still records
            held = clone.client.get(f"/v1/members/{DEMO_CARD}")["balance"]
            code, answer, _ = _run(clone.state, "sync")
            assert (code, answer["error"]) == (3, "restored_from_backup"), answer
            assert "refuses to record" in answer["message"]
            written = _journal(clone.state)

            # The running agent refuses from now on, with the way out.
            with pytest.raises(AgentError) as refused:
                clone.client.post(
                    "/v1/earn", {"member": DEMO_CARD, "receipt": "C2", "amount": "5.00"}
                )
            assert (refused.value.http_status, refused.value.code) == (503, CODE)
            assert "register" in str(refused.value) and "restored from backup" in str(refused.value)
            status = clone.client.get("/v1/status")
            assert status["journal_ok"] is False and status["journal_problem"]["error"] == CODE
            assert clone.client.get(f"/v1/members/{DEMO_CARD}")["member_id"]  # reads work

            # So does the command line, in its own process, and after a restart.
            code, answer, _ = _earn(clone.state, "C3")
            assert (code, answer["error"]) == (3, CODE), answer
            code, answer, _ = _run(clone.state, "enroll", "--name", "Bo", "--phone", "0611111111")
            assert (code, answer["error"]) == (3, CODE), answer
            assert clone.stop() == 0
            code, offline, _ = _run(clone.state, "status")
            assert offline["agent"] == "not running" and offline["journal_problem"]["error"] == CODE
            code, balance, _ = _run(clone.state, "balance", "--member", DEMO_CARD)
            assert code == 0 and balance["balance"] == held, balance
            assert _journal(clone.state) == written
            # The original, untouched by all of this, still records (until HQ's freeze
            # reaches it at its next sync).
            ledger = Ledger(till)
            try:
                assert ledger.refusal() is None
            finally:
                ledger.close()
    finally:
        clone.close()
        hq.close()
