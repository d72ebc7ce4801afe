"""Shared fixtures: a real ledger in tmp_path with a clock the test controls, and the
command line run in-process the way a script would run it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.ledger import Ledger
from tillpoints.cli import main
from tillpoints.simulated_till import SimulatedTill

pytest_plugins = ["tests.sync_helpers"]

REPO = Path(__file__).resolve().parents[1]
TZ = dt.timezone(dt.timedelta(hours=8))


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    # A Wednesday in March: no default promotion, nobody's birthday month by accident.
    return Clock(dt.datetime(2026, 3, 11, 10, 0, tzinfo=TZ))


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    opened = Ledger.init(tmp_path / "state", "S001", "T01", clock=clock)
    yield opened
    opened.close()


def journal_count(ledger: Ledger) -> int:
    return int(ledger.store.conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])


@dataclass
class Outcome:
    status: int
    json: dict[str, Any]
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `tillpoints ... --json` in-process against a state dir in tmp_path."""
    monkeypatch.setenv("TILLPOINTS_STATE", str(tmp_path / "till"))
    monkeypatch.setenv("TILLPOINTS_CONFIG", str(tmp_path / "absent.toml"))

    def run(*argv: str) -> Outcome:
        capsys.readouterr()
        status = main([*argv, "--json"])
        out, err = capsys.readouterr()
        lines = out.strip().splitlines()
        assert len(lines) == 1, f"--json must print exactly one line, got {out!r}"
        return Outcome(status, json.loads(lines[0]), err)

    return run


@pytest.fixture
def till(tmp_path: Path) -> Iterator[SimulatedTill]:
    """A running `tillpoints agent` with a serial reader on a pseudo-terminal."""
    simulated = SimulatedTill(tmp_path)
    simulated.start()
    try:
        yield simulated
    finally:
        simulated.close()
