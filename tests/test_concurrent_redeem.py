"""Two cashiers (or a cashier and a script) spend the same balance at the same moment:
real processes race on one ledger file, and the balance is spent once. Each redeem
reads the balance inside its own `BEGIN IMMEDIATE` transaction, so the second one
sees what the first one wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.audit import verify_ledger
from agent.ledger import Ledger
from tests.conftest import REPO

pytestmark = pytest.mark.slow
CARD = "9900835840532866"
RACERS = 4

# Each racer imports everything first, then waits for the starting gun (a file), so
# that the redeems themselves, not the interpreters' start-up, overlap.
RACER = """
import pathlib, sys, time
from tillpoints.cli import main
gun = pathlib.Path(sys.argv[1])
while not gun.exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[2:]))
"""


def test_one_balance_raced_by_four_processes_is_spent_once(tmp_path: Path) -> None:
    state = tmp_path / "till"
    ledger = Ledger.init(state, "S001", "T01")
    ledger.enrol(name="Racer", phone="5550001234", card=CARD)
    balance = ledger.balance(CARD).balance
    ledger.close()
    assert balance == 100  # the enrolment bonus: exactly one minimum redemption

    env = {
        **os.environ,
        "TILLPOINTS_STATE": str(state),
        "TILLPOINTS_CONFIG": str(tmp_path / "absent.toml"),
        "PYTHONPATH": str(REPO),
    }
    gun = tmp_path / "go"
    redeem = ["redeem", "--member", CARD, "--points", str(balance), "--json"]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(gun), *redeem, "--receipt", f"RACE{n}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(RACERS)
    ]
    gun.touch()
    outcomes = []
    for proc in racers:
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err
        outcomes.append((proc.returncode, json.loads(out)))

    won = [result for status, result in outcomes if status == 0]
    lost = [result for status, result in outcomes if status != 0]
    assert len(won) == 1 and won[0]["balance"] == 0
    assert {(result["error"]) for result in lost} == {"insufficient_points"}
    assert all(status == 3 for status, _ in outcomes if status != 0)

    ledger = Ledger(state)
    try:
        assert ledger.balance(CARD).balance == 0
        redeems = [entry for entry in ledger.entries() if entry.kind == "redeem"]
        assert len(redeems) == 1
        assert verify_ledger(ledger).ok
    finally:
        ledger.close()
