"""Bench hooks for the cashier UI (for `tillpoints bench`), each returning
``{"value": V, "unit": U}``. Both run against a real agent with its reader on a
pseudo-terminal (``SimulatedTill``), in a temporary directory.

- ``ui_first_frame_s``: from launching ``python -m ui`` (a new interpreter, so the
  imports count) to the app's first frame (Textual's ``Ready`` event). Target 1 s.
- ``scan_to_member_panel_ms``: from a swipe written to the reader's pty to the
  member's name in the panel, median of several swipes. Target 100 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tillpoints.simulated_till import SimulatedTill

# No watchdog: nothing reads the simulated till's NOTIFY_SOCKET while we measure.
NO_WATCHDOG = 0

MEMBER_SWIPE = b";9900835840532866=3012?\r"
SWIPES = 5
# The reader reports the same card twice within its `duplicate_ms` (1 s) once.
DUPLICATE_GAP_S = 1.1

# Textual's Ready event comes once the first frame is on screen; CLOCK_MONOTONIC is
# one clock for every process, so the child's reading and the parent's compare.
_FIRST_FRAME_CHILD = """
import sys, time
from pathlib import Path
import ui.app

class Timed(ui.app.CashierApp):
    CSS_PATH = str(Path(ui.app.__file__).with_name("app.tcss"))

    def on_ready(self) -> None:
        Path(sys.argv[2]).write_text(repr(time.monotonic()))
        self.exit()

Timed(sys.argv[1], status_every_s=0).run(headless=True)
"""


def ui_first_frame_s() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tillpoints-bench-ui-") as directory:
        till = SimulatedTill(Path(directory))
        try:
            till.start(watchdog_usec=NO_WATCHDOG)
            started = time.monotonic()
            mark = Path(directory) / "first-frame"
            subprocess.run(
                [sys.executable, "-c", _FIRST_FRAME_CHILD, till.client.socket_path, str(mark)],
                env=till.env,
                capture_output=True,
                timeout=60,
                check=True,
            )
            ready = float(mark.read_text())
        finally:
            till.close()
    return {"value": round(ready - started, 3), "unit": "s"}


def scan_to_member_panel_ms(swipes: int = SWIPES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tillpoints-bench-ui-") as directory:
        till = SimulatedTill(Path(directory))
        try:
            till.start(watchdog_usec=NO_WATCHDOG)
            times = asyncio.run(_scan_times(till, swipes))
        finally:
            till.close()
    return {"value": round(statistics.median(times), 1), "unit": "ms"}


async def _scan_times(till: SimulatedTill, swipes: int) -> list[float]:
    from textual.widgets import Static

    from ui.app import CashierApp

    app = CashierApp(till.client.socket_path, cursor_blink=False, status_every_s=0)
    times: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:

        def name() -> str:
            return str(app.screen.query_one("#member-name", Static).content)

        deadline = time.monotonic() + 10
        while not app.linked and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for _ in range(swipes):
            await pilot.press("escape")
            await asyncio.sleep(DUPLICATE_GAP_S)
            start = time.perf_counter()
            till.swipe(MEMBER_SWIPE)
            while "Ann" not in name() or not app.counter.query_one("#member").display:
                if time.perf_counter() - start > 5:
                    raise TimeoutError("the member panel did not show the member")
                await asyncio.sleep(0.0005)
            times.append((time.perf_counter() - start) * 1000)
            # The panel keeps the name while hidden: clear it for the next swipe.
            app.counter.query_one("#member-name", Static).update("")
    return times


if __name__ == "__main__":
    print({"ui_first_frame": ui_first_frame_s(), "scan_to_member_panel": scan_to_member_panel_ms()})
