"""A till that earns as fast as it can and says so after each commit.

Run by tests/test_crash.py (and tests/test_checkpointer.py, with its WAL
checkpointed by a thread of its own) as a real process, then killed with SIGKILL: every
receipt printed here was acknowledged and must survive."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.ledger import Ledger

CARDS = ("9900835840532866", "9900568732746027")


def main(state: str, prefix: str, checkpointer: bool = False) -> None:
    ledger = Ledger(Path(state))
    if checkpointer:  # as the agent runs its ledger (agent.checkpointer)
        ledger.start_checkpointer()
    number = 0
    while True:
        receipt = f"{prefix}-{number}"
        ledger.earn(CARDS[number % 2], receipt, amount=100 + number % 900)
        sys.stdout.write(receipt + "\n")
        sys.stdout.flush()
        number += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["checkpointer"])
