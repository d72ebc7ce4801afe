"""Crash safety with real processes killed by SIGKILL at random moments: afterwards
the journal verifies, every acknowledged earn is there, and re-issuing any earn is
safe (it is either replayed or recorded once)."""

from __future__ import annotations

import json
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
from tests.crash_helpers import (
    CARDS,
    assert_acknowledged_kept,
    kill_writers,
    make_state,
    receipts,
    writer_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return make_state(tmp_path)


def test_writer_killed_mid_stream_loses_nothing_acknowledged(state: Path) -> None:
    acknowledged = kill_writers(state, random.Random(7), "W", (0.0, 0.3))
    assert len(acknowledged) > 8
    assert_acknowledged_kept(state, acknowledged)


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
        env=writer_env(state),
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
    stored = set(receipts(state))
    assert set(acknowledged) <= stored
    # Re-issue every earn: recorded ones replay, the others are recorded now, once.
    for number, receipt in enumerate(attempted):
        proc = _earn(state, receipt, CARDS[number % 2])
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["replayed"] is (receipt in stored)
    final = receipts(state)
    assert sorted(r for r in final if r.startswith("K")) == sorted(attempted)
    ledger = Ledger(state)
    try:
        assert verify_ledger(ledger).ok
    finally:
        ledger.close()
