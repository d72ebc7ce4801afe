"""Fixtures and helpers for the cashier UI's tests (imported by the test_ui_*
modules): a real till agent on a pseudo-terminal reader, and waits for the screen."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Static

from tillpoints.simulated_till import SimulatedTill

MEMBER_SWIPE = b";9900835840532866=3012?\r"
UNKNOWN_SWIPE = b";9900568732746027=3012?\r"
BANK_SWIPE = b";4111111111111111=2512?\r"
GARBLED_SWIPE = b"%E?;E?\r"
SUPERVISOR, SUPERVISOR_PIN = "sup1", "4321"
AGENT_CLI = (sys.executable, "-m", "tillpoints.cli")


@pytest.fixture(name="till")
def till_fixture(tmp_path: Path) -> Iterator[SimulatedTill]:
    """A till with member Ann, its agent running (import this name to use it)."""
    simulated = SimulatedTill(tmp_path)
    try:
        # No watchdog: nobody reads the NOTIFY_SOCKET after READY, and WATCHDOG=1
        # datagrams piling up in it block the agent within seconds.
        simulated.start(watchdog_usec=0)
        yield simulated
    finally:
        simulated.close()


def add_supervisor(till: SimulatedTill) -> None:
    subprocess.run(
        [*AGENT_CLI, "staff", "add", "--id", SUPERVISOR, "--role", "supervisor", "--pin-stdin"],
        input=SUPERVISOR_PIN + "\n",
        env=till.env,
        check=True,
        capture_output=True,
        text=True,
    )


def text_of(app: App[object], selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def wait_for(pilot: Pilot[object], ready: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError("the screen did not get there in time")
        await pilot.pause(0.02)


def pilot_test(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test on its own event loop (no pytest async plugin needed;
    pytest still reads the fixtures from the wrapped signature)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
