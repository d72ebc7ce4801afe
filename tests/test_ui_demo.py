"""`tillpoints demo`'s store: HQ, a registered till, the agent on a pty reader, and
the app with its demo keys; everything it started is stopped on close."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from agent.results import SuggestionShown
from agent.suggestions import suggestions_for
from tests.test_ui_support import pilot_test, text_of, wait_for
from tillpoints.demo import DemoStore, demo_app
from tillpoints.simulated_till import DEMO_CARD
from ui.screens.swipe_picker import SwipePicker


@pilot_test
async def test_demo_store_swipes_samples_and_syncs(tmp_path: Path) -> None:
    store = DemoStore(tmp_path, say=lambda text: None)
    try:
        store.start()
        app = demo_app(store, cursor_blink=False)
        app.status_every_s = 0
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.linked)
            assert "F8 swipes a sample card" in text_of(app, "#demo-bar")
            await pilot.press("f8")
            assert isinstance(app.screen, SwipePicker)
            await pilot.press("1")
            await wait_for(pilot, lambda: text_of(app, "#member-name") == "Ann")
            await pilot.press("f8", "3")
            await wait_for(pilot, lambda: "bank card" in text_of(app, "#notice"))
            await pilot.press("f9")
            await wait_for(
                pilot,
                lambda: (
                    "Synced with HQ" in text_of(app, "#notice")
                    or "not available" in text_of(app, "#notice")
                ),
                timeout=60,
            )
            if not store.sync.unavailable:
                assert "Synced with HQ: 2 entries uploaded" in text_of(app, "#notice")
                # Ann's birthday is in five days and she consents: HQ's suggestion is here.
                assert [s.reason for s in _suggestions(store.till.state)] == ["birthday"]
                # ... and on the member panel at her next swipe.
                await pilot.press("f8", "1")
                await wait_for(
                    pilot, lambda: "Birthday coming" in text_of(app, "#member-suggestions")
                )
        processes = [store.till.proc, store.hq]
    finally:
        store.close()
    assert all(process is None or process.poll() is not None for process in processes)


def test_demo_without_hq_runs_offline(tmp_path: Path) -> None:
    store = DemoStore(tmp_path, say=lambda text: None)
    store._cli = _refuse  # type: ignore[method-assign]
    try:
        store.start()
        assert store.sync.unavailable
        assert store.till.client.get("/v1/status")["store"] == "S001"
    finally:
        store.close()


def _suggestions(state: Path) -> list[SuggestionShown]:
    conn = sqlite3.connect(f"file:{state / 'ledger.db'}?mode=ro", uri=True)
    try:
        member = conn.execute("SELECT account FROM cards WHERE card = ?", (DEMO_CARD,))
        return list(suggestions_for(conn, str(member.fetchone()[0]), dt.date.today()))
    finally:
        conn.close()


def _refuse(*args: str) -> dict[str, object]:
    from tillpoints.demo import HQUnavailable

    raise HQUnavailable("`tillpoints hq init`: invalid choice: 'hq'")
