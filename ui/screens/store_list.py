"""F12: the store's list for its in-store advisors (issue 15): today's suggestions
from HQ for the members who shop here most (``GET /v1/suggestions``): who, why, the
offer, the last visit, and no phone number. A / D / L record what the highlighted
member answered (``POST /v1/suggestions``, as on the member panel); Esc goes back."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AgentClient
from agent.errors import LedgerError
from ui.answers import ANSWER_HINT, ANSWER_KEYS, answered_words, reason_words, record_answer
from ui.messages import StatusStale, StoreListLoaded, SuggestionAnswered

COLUMNS = ("Member", "Why", "Offer", "Last visit")


class StoreListScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        *(Binding(key, f"answer('{outcome}')", outcome.title()) for key, outcome in ANSWER_KEYS),
    ]

    def __init__(self, client: AgentClient) -> None:
        super().__init__()
        self.client = client
        self.lines: list[dict[str, Any]] = []
        self.store = ""

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        yield Static("Today's suggestions from HQ for this store's members", id="list-heading")
        yield DataTable(id="store-list", cursor_type="row", zebra_stripes=True)
        yield Static("", id="list-text")
        yield Static("Loading…", id="notice", classes="-busy")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#store-list", DataTable).add_columns(*COLUMNS)
        self.load()

    # -- the list ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="store-list")
    def load(self, said: str = "") -> None:
        """``GET /v1/suggestions``; ``said``: the answer just recorded, kept on screen."""
        try:
            listed = self.client.get("/v1/suggestions")
        except LedgerError as error:
            self.post_message(StoreListLoaded(None, error.message))
        else:
            self.post_message(StoreListLoaded(listed, said=said))

    @on(StoreListLoaded)
    def _loaded(self, event: StoreListLoaded) -> None:
        if event.listed is None:
            self.say(escape(event.error), "-error")
            return
        self.store = str(event.listed.get("store", ""))
        self.lines = [
            line
            for line in event.listed.get("suggestions") or []
            if isinstance(line, dict) and line.get("id")
        ]
        table = self.query_one("#store-list", DataTable)
        table.clear()
        for line in self.lines:
            offer = line.get("offer") or {}
            table.add_row(
                escape(str(line.get("name") or line.get("member_id"))),
                reason_words(line.get("reason")),
                escape(str(offer.get("title") or "—")),
                str(line.get("last_visit") or "—"),
                key=str(line["id"]),
            )
        self._show_text()
        if event.said:
            self.say(event.said, "-good")
        elif self.lines:
            self.say(f"{len(self.lines)} to contact · {ANSWER_HINT} for the highlighted member")
        else:
            self.say(f"No suggestions from HQ today for the members of store {self.store}.")

    @on(DataTable.RowHighlighted)
    def _show_text(self) -> None:
        line = self._highlighted()
        text = self.query_one("#list-text", Static)
        text.update(escape(str(line.get("text", ""))) if line else "")

    def _highlighted(self) -> dict[str, Any] | None:
        table = self.query_one("#store-list", DataTable)
        if not self.lines or not 0 <= table.cursor_row < len(self.lines):
            return None
        return self.lines[table.cursor_row]

    def say(self, text: str, kind: str = "") -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.set_classes(kind)

    # -- answers -----------------------------------------------------------------------

    def action_answer(self, outcome: str) -> None:
        line = self._highlighted()
        if line is None:
            self.say("Nobody to answer for: the list is empty.", "-warn")
            return
        self.say("Recording the answer…", "-busy")
        self._send_answer(line, outcome)

    @work(thread=True, exclusive=True, group="answer")
    def _send_answer(self, line: dict[str, Any], outcome: str) -> None:
        # The suggestion names its member: the agent takes the member id for a
        # member of another till, whom this till may know by card only.
        self.post_message(record_answer(self.client, str(line["member_id"]), line, outcome))

    @on(SuggestionAnswered)
    def _answered(self, answer: SuggestionAnswered) -> None:
        who = str(answer.suggestion.get("name") or answer.member_ref)
        words = answered_words(answer, who)
        offer = answer.suggestion.get("offer")
        if answer.outcome == "accepted" and isinstance(offer, dict) and not answer.code:
            words += f" The offer ({offer.get('title')}) is given at the till when they come in."
        if answer.code:
            self.say(escape(words), "-error")
            return
        self.post_message(StatusStale())
        self.load(escape(words))

    def action_back(self) -> None:
        self.dismiss(None)
