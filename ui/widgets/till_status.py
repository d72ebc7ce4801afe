"""The till's health at the top of the counter: reader, HQ sync, journal, clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Static

from ui.texts import readers_state, sync_state


class TillStatus(Vertical):
    def __init__(
        self, now: Callable[[], dt.datetime] | None = None, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.now = now or (lambda: dt.datetime.now().astimezone())

    def compose(self) -> ComposeResult:
        with Horizontal(id="status-row"):
            yield Static("", id="status-reader", classes="pill")
            yield Static("", id="status-sync", classes="pill")
            yield Static("", id="status-journal", classes="pill")
        yield Static("", id="status-clock")

    def show(self, status: dict[str, Any] | None, linked: bool, reason: str = "") -> None:
        try:
            reader = self.query_one("#status-reader", Static)
            sync = self.query_one("#status-sync", Static)
            journal = self.query_one("#status-journal", Static)
            clock = self.query_one("#status-clock", Static)
        except NoMatches:
            return  # the app is closing: the pills are removed before the bar
        if not linked or status is None:
            reader.update("● agent not answering: retrying")
            reader.set_classes("pill -bad")
            sync.update("")
            journal.update("")
            clock.display = False
            return
        healthy, words = readers_state(list(status.get("readers") or []))
        reader.update(f"● {words}")
        reader.set_classes("pill " + ("-good" if healthy else "-bad"))
        online, words = sync_state(status.get("last_sync"), self.now())
        sync.update(f"● {words}")
        sync.set_classes("pill " + ("-good" if online else "-warn"))
        unsynced = int(status.get("unsynced") or 0)
        journal.update(f"{unsynced} to upload" if unsynced else "all uploaded")
        journal.set_classes("pill")
        clock.display = status.get("clock_ok") is False
        clock.update(
            "⚠ The till's clock looks wrong (behind its own last entry, or before 2024): "
            "ask IT to set it before recording sales."
        )
