"""The cashier app: a client of the till agent's local API, and nothing else.

It never opens the ledger or the key. Scans and reader changes arrive on the
agent's event stream (read by an async worker on the app's loop); requests go out
through ``AgentClient`` in thread workers; both come back as messages.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Protocol

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from agent.client import AgentClient
from agent.errors import LedgerError
from ui.link import StreamEnded, stream_events
from ui.messages import (
    LinkChanged,
    ReaderChanged,
    ScanArrived,
    StatusArrived,
    StatusStale,
    SyncFinished,
)
from ui.screens.counter import CounterScreen
from ui.screens.form import FormScreen
from ui.screens.swipe_picker import SAMPLES, SwipePicker
from ui.sync_run import SyncCommand

RETRY_S = 1.0
STATUS_EVERY_S = 30.0


class SampleReader(Protocol):
    """The demo's simulated reader: bytes written here arrive as a swipe."""

    def swipe(self, data: bytes) -> None: ...


class CashierApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "tillpoints"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f8", "swipe", "Swipe"),
        Binding("f9", "sync", "Sync"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    def __init__(
        self,
        socket_path: str,
        *,
        sync: SyncCommand | None = None,
        reader: SampleReader | None = None,
        cursor_blink: bool = True,
        status_every_s: float = STATUS_EVERY_S,
    ) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.client = AgentClient(socket_path)
        self.sync = sync or SyncCommand.local()
        self.reader = reader
        self.cursor_blink = cursor_blink
        self.status_every_s = status_every_s
        self.status: dict[str, Any] | None = None
        self.linked = False
        self.link_reason = ""
        self.syncing = False

    def get_default_screen(self) -> Screen[Any]:
        hint = ""
        if self.reader is not None:
            hint = "DEMO  F8 swipes a sample card  ·  F9 runs the nightly sync"
            if self.sync.unavailable:
                hint += " (unavailable)"
        return CounterScreen(self.client, cursor_blink=self.cursor_blink, demo_hint=hint)

    @property
    def counter(self) -> CounterScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, CounterScreen)
        return screen

    def on_mount(self) -> None:
        self.follow_agent()
        if self.status_every_s:
            self.set_interval(self.status_every_s, self.refresh_status)

    # -- the agent's events ------------------------------------------------------------

    @work(exclusive=True, group="events")
    async def follow_agent(self) -> None:
        """Follow ``/v1/events`` for as long as the app runs, reconnecting when the
        agent restarts (its ``hello`` brings the status back)."""
        while True:
            try:
                async for item in stream_events(self.socket_path):
                    if item.event == "hello":
                        self.post_message(LinkChanged(True))
                        self.post_message(StatusArrived(item.data))
                    elif item.event == "scan":
                        self.post_message(ScanArrived(item.data))
                    elif item.event == "reader":
                        self.post_message(
                            ReaderChanged(str(item.data.get("path")), str(item.data.get("state")))
                        )
            except (OSError, StreamEnded) as error:
                self.post_message(LinkChanged(False, str(error)))
            await asyncio.sleep(RETRY_S)

    def _show_status(self) -> None:
        # A status can arrive while the app is closing, its screens already gone.
        if self.screen_stack:
            self.counter.show_status(self.status, self.linked, self.link_reason)

    @on(LinkChanged)
    def _link(self, event: LinkChanged) -> None:
        self.linked, self.link_reason = event.connected, event.reason
        self._show_status()

    @on(StatusArrived)
    def _status(self, event: StatusArrived) -> None:
        self.status = event.status
        self._show_status()

    @on(ReaderChanged)
    def _reader(self, event: ReaderChanged) -> None:
        if self.status is not None:
            for reader in self.status.get("readers") or []:
                if reader.get("path") == event.path:
                    reader["connected"] = event.state == "connected"
                    reader["state"] = event.state
            self._show_status()
        self.refresh_status()

    @on(ScanArrived)
    def _scan(self, event: ScanArrived) -> None:
        """A form with a card field takes the next scan; otherwise a new card means a
        new customer: back to the counter, which shows it."""
        top = self.screen
        if isinstance(top, FormScreen) and top.accept_scan(event.scan):
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.counter.show_scan(event.scan)

    @on(StatusStale)
    def refresh_status(self) -> None:
        self._fetch_status()

    @work(thread=True, exclusive=True, group="status")
    def _fetch_status(self) -> None:
        try:
            status = self.client.get("/v1/status")
        except LedgerError:
            return  # the event stream reports the agent's absence
        self.post_message(StatusArrived(status))

    # -- keys ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "swipe":
            return self.reader is not None
        return True

    def action_swipe(self) -> None:
        if self.reader is None or isinstance(self.screen, SwipePicker):
            return
        reader = self.reader

        def swipe(name: str | None) -> None:
            if name is not None:
                reader.swipe(SAMPLES[name][1])

        self.push_screen(SwipePicker(), swipe)

    def action_sync(self) -> None:
        if self.syncing:
            return
        self.syncing = True
        self.counter.say("Syncing with HQ…", "-busy")
        self._run_sync()

    @work(thread=True, exclusive=True, group="sync")
    def _run_sync(self) -> None:
        outcome = self.sync.run()
        self.post_message(SyncFinished(outcome.ok, outcome.text))

    @on(SyncFinished)
    def _synced(self, event: SyncFinished) -> None:
        self.syncing = False
        self.counter.say(event.text, "-good" if event.ok else "-error")
        self.refresh_status()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"


def run_ui(socket_path: str, sync_args: tuple[str, ...] = ()) -> None:
    """`tillpoints ui`: the cashier app against the agent at ``socket_path``.
    ``sync_args`` are the global options (``--state``, ``--config``) that F9's
    ``tillpoints sync`` needs to find this till."""
    CashierApp(socket_path, sync=SyncCommand.local(sync_args)).run()
