"""What the crash tests share (tests/test_crash.py, tests/test_checkpointer.py): a
till with two members, writers run as real processes and killed by SIGKILL, and
the check that every earn they acknowledged survived, once, in a journal that
verifies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.audit import verify_ledger
from agent.ledger import Ledger
from tests.conftest import REPO
from tests.crash_writer import CARDS

__all__ = [
    "CARDS",
    "assert_acknowledged_kept",
    "kill_writers",
    "make_state",
    "receipts",
    "writer_env",
]


def writer_env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TILLPOINTS_STATE": str(state),
        "TILLPOINTS_CONFIG": str(state.parent / "absent.toml"),
        "PYTHONPATH": str(REPO),
    }


def make_state(tmp_path: Path) -> Path:
    """A till with the two members ``CARDS`` belong to."""
    path = tmp_path / "till"
    ledger = Ledger.init(path, "S001", "T01")
    for number, card in enumerate(CARDS):
        ledger.enrol(name=f"M{number}", phone=f"555000{number:04d}", card=card)
    ledger.close()
    return path


def receipts(state: Path) -> list[str]:
    ledger = Ledger(state)
    try:
        return [entry.body["receipt"] for entry in ledger.entries() if entry.kind == "earn"]
    finally:
        ledger.close()


def kill_writers(
    state: Path, rng: random.Random, prefix: str, pause: tuple[float, float], *args: str
) -> list[str]:
    """Eight rounds of ``tests.crash_writer`` (with ``args``), each killed by SIGKILL
    a random ``pause`` after its first acknowledged earn: the receipts it printed."""
    acknowledged: list[str] = []
    for round_number in range(8):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.crash_writer",
                str(state),
                f"{prefix}{round_number}",
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=writer_env(state),
        )
        try:
            assert proc.stdout is not None
            acknowledged.append(proc.stdout.readline().strip())  # up and committing
            time.sleep(rng.uniform(*pause))
        finally:
            proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate()
        # Lines already written to the pipe were acknowledged before the kill.
        acknowledged.extend(line for line in rest.splitlines() if line)
    return acknowledged


def assert_acknowledged_kept(state: Path, acknowledged: list[str]) -> None:
    """Every acknowledged earn is stored, none twice, and the journal verifies."""
    stored = receipts(state)
    assert len(stored) == len(set(stored)), "an earn was recorded twice"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"acknowledged earns lost: {sorted(missing)[:5]}"
    ledger = Ledger(state)
    try:
        report = verify_ledger(ledger)
        assert report.ok, report
    finally:
        ledger.close()
