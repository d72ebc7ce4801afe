"""Crash safety with real processes killed by SIGKILL at random moments: afterwards
the journal verifies, every acknowledged earn is there, and re-issuing any earn is
safe (it is either replayed or recorded once)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.audit import verify_ledger
from agent.ledger import Ledger
from tests.conftest import REPO

pytestmark = pytest.mark.slow
CARDS = ("9900835840532866", "9900568732746027")


def _env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TILLPOINTS_STATE": str(state),
        "TILLPOINTS_CONFIG": str(state.parent / "absent.toml"),
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "till"
    ledger = Ledger.init(path, "S001", "T01")
    for number, card in enumerate(CARDS):
        ledger.enrol(name=f"M{number}", phone=f"555000{number:04d}", card=card)
    ledger.close()
    return path


def _receipts(state: Path) -> list[str]:
    ledger = Ledger(state)
    try:
        return [entry.body["receipt"] for entry in ledger.entries() if entry.kind == "earn"]
    finally:
        ledger.close()


def test_writer_killed_mid_stream_loses_nothing_acknowledged(state: Path) -> None:
    rng = random.Random(7)
    acknowledged: list[str] = []
    for round_number in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_writer", str(state), f"W{round_number}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_env(state),
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the writer is up and committing
            acknowledged.append(first.strip())
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate()
        # Lines already written to the pipe were acknowledged before the kill.
        acknowledged.extend(line for line in rest.splitlines() if line)
    stored = _receipts(state)
    assert len(stored) == len(set(stored)), "an earn was recorded twice"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"acknowledged earns lost: {sorted(missing)[:5]}"
    assert len(acknowledged) > 8
    ledger = Ledger(state)
    try:
        report = verify_ledger(ledger)
        assert report.ok, report
    finally:
        ledger.close()


def _earn(state: Path, receipt: str, card: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tillpoints.cli",
            "earn",
            "--member",
            card,
            "--receipt",
            receipt,
            "--amount",
            "12.34",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(state),
    )


def test_cli_earns_killed_at_random_moments_are_safe_to_reissue(state: Path) -> None:
    rng = random.Random(11)
    attempted, acknowledged = [], []
    for number in range(16):
        receipt = f"K{number}"
        proc = _earn(state, receipt, CARDS[number % 2])
        attempted.append(receipt)
        time.sleep(rng.uniform(0.02, 0.16))  # start-up is ~130 ms
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if proc.returncode == 0 and out.strip():
            acknowledged.append(receipt)
    stored = set(_receipts(state))
    assert set(acknowledged) <= stored
    # Re-issue every earn: recorded ones replay, the others are recorded now, once.
    for number, receipt in enumerate(attempted):
        proc = _earn(state, receipt, CARDS[number % 2])
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["replayed"] is (receipt in stored)
    final = _receipts(state)
    assert sorted(r for r in final if r.startswith("K")) == sorted(attempted)
    ledger = Ledger(state)
    try:
        assert verify_ledger(ledger).ok
    finally:
        ledger.close()
