"""Bench hooks for the cashier UI (for `tillpoints bench`), each returning
``{"value": V, "unit": U}``. Both run against a real agent with its reader on a
pseudo-terminal (``SimulatedTill``), in a temporary directory.

- ``ui_first_frame_s``: from launching ``python -m ui`` (a new interpreter, so the
  imports count) to the app's first frame (Textual's ``Ready`` event). Target 1 s.
- ``scan_to_member_panel_ms``: from a swipe written to the reader's pty to the
  member's name in the panel, median of several swipes. Target 100 ms.
- ``scan_to_member_panel_10k_suggestions_ms``: the same, the till holding 10,000 of
  HQ's suggestions (5,000 members, two each, Ann's among them) and the panel
  showing Ann's two: suggestions must add nothing measurable (issue 15).
"""

from __future__ import annotations

import asyncio
import sqlite3
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
# HQ's suggestions a till holds in the suggestions figure (the chain's set).
SUGGESTIONS_HELD = 10_000

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


def scan_to_member_panel_ms(swipes: int = SWIPES, suggestions: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tillpoints-bench-ui-") as directory:
        till = SimulatedTill(Path(directory))
        try:
            if suggestions:
                _hold_suggestions(till, suggestions)
            till.start(watchdog_usec=NO_WATCHDOG)
            times = asyncio.run(_scan_times(till, swipes, bool(suggestions)))
        finally:
            till.close()
    return {"value": round(statistics.median(times), 1), "unit": "ms"}


def scan_to_member_panel_10k_suggestions_ms(swipes: int = SWIPES) -> dict[str, Any]:
    return scan_to_member_panel_ms(swipes, suggestions=SUGGESTIONS_HELD)


def _hold_suggestions(till: SimulatedTill, count: int) -> None:
    """``count`` suggestions as HQ's download would leave them, two per member, two
    of them Ann's (the first members are made up: a till holds the chain's set)."""
    import datetime as dt

    from agent.ledger import DB_FILE
    from agent.suggestions import apply_suggestions

    today = dt.date.today()
    window = (today - dt.timedelta(days=3)).isoformat(), (today + dt.timedelta(days=10)).isoformat()
    conn = sqlite3.connect(till.state / DB_FILE)
    try:
        with conn:
            ann = str(conn.execute("SELECT member_id FROM members").fetchone()[0])
            members = [ann] + [f"000000bench-{index}" for index in range(count // 2 - 1)]
            items = [
                {
                    "suggestion_id": f"s{index:08d}-{rank}",
                    "member_id": member,
                    "reason": reason,
                    "text": f"Bench suggestion {index} ({reason})",
                    "offer_id": "",
                    "home_store": f"S{index % 100:03d}",
                    "last_visit": "2026-11-20",
                    "valid_from": window[0],
                    "valid_to": window[1],
                    "rank": rank,
                }
                for index, member in enumerate(members)
                for rank, reason in ((1, "birthday"), (2, "expiring_points"))
            ]
            apply_suggestions(conn, {"suggestions": items})
    finally:
        conn.close()


async def _scan_times(till: SimulatedTill, swipes: int, suggestions: bool = False) -> list[float]:
    from textual.widgets import Static

    from ui.app import CashierApp

    app = CashierApp(till.client.socket_path, cursor_blink=False, status_every_s=0)
    times: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:

        def name() -> str:
            return str(app.screen.query_one("#member-name", Static).content)

        def shown() -> bool:
            """Ann's name, and her suggestions when the till holds some."""
            if "Ann" not in name() or not app.counter.query_one("#member").display:
                return False
            return not suggestions or "Bench suggestion" in str(
                app.screen.query_one("#member-suggestions", Static).content
            )

        deadline = time.monotonic() + 10
        while not app.linked and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for _ in range(swipes):
            await pilot.press("escape")
            await asyncio.sleep(DUPLICATE_GAP_S)
            start = time.perf_counter()
            till.swipe(MEMBER_SWIPE)
            while not shown():
                if time.perf_counter() - start > 5:
                    raise TimeoutError("the member panel did not show the member")
                await asyncio.sleep(0.0005)
            times.append((time.perf_counter() - start) * 1000)
            # The panel keeps its lines while hidden: clear them for the next swipe.
            for line in ("#member-name", "#member-suggestions"):
                app.counter.query_one(line, Static).update("")
    return times


if __name__ == "__main__":
    print(
        {
            "ui_first_frame": ui_first_frame_s(),
            "scan_to_member_panel": scan_to_member_panel_ms(),
            "scan_to_member_panel_10k_suggestions": scan_to_member_panel_10k_suggestions_ms(),
        }
    )
