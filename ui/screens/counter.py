"""The counter: the screen a cashier lives on. Idle, it asks for a card and shows
the till's health; on a scan, the member; the function keys open each flow."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from agent.client import AgentClient
from agent.errors import LedgerError
from ui.answers import ANSWER_KEYS, answered_words, record_answer, shown_suggestions
from ui.messages import MemberLoaded, Outcome, StatusStale, SuggestionAnswered
from ui.screens.earn import EarnScreen
from ui.screens.ecard import EcardScreen
from ui.screens.enrol import EnrolScreen
from ui.screens.lookup import LookupScreen
from ui.screens.redeem import RedeemScreen
from ui.screens.refund import RefundScreen
from ui.screens.replace_card import ReplaceCardScreen
from ui.screens.store_list import StoreListScreen
from ui.texts import scan_refusal
from ui.widgets.member_panel import MemberPanel
from ui.widgets.till_status import TillStatus

IDLE_TEXT = "Swipe or scan a member card"


class CounterScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "earn", "Earn"),
        Binding("f3", "redeem", "Redeem"),
        Binding("f4", "enrol", "Enrol"),
        Binding("f5", "lookup", "Lookup"),
        Binding("f6", "refund", "Refund"),
        Binding("f7", "replace_card", "Card"),
        Binding("f12", "store_list", "Store"),
        Binding("escape", "clear", "Clear", show=False),
        # What the member answered to the suggestion shown first (ui.answers).
        *(
            Binding(key, f"answer('{outcome}')", outcome, show=False)
            for key, outcome in ANSWER_KEYS
        ),
    ]

    def __init__(
        self, client: AgentClient, *, cursor_blink: bool = True, demo_hint: str = ""
    ) -> None:
        super().__init__()
        self.client, self.cursor_blink, self.demo_hint = client, cursor_blink, demo_hint
        self.scan: dict[str, Any] | None = None
        self.status: tuple[dict[str, Any] | None, bool, str] = (None, False, "connecting")
        self.ready = False  # composed and mounted

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        yield TillStatus(id="till-status")
        with Vertical(id="body"):
            yield Static(IDLE_TEXT, id="idle")
            yield MemberPanel(id="member")
        yield Static("", id="notice")
        if self.demo_hint:
            yield Static(self.demo_hint, id="demo-bar")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#member", MemberPanel).display = False
        self.ready = True
        self.show_status(*self.status)

    # -- what the app hands down -------------------------------------------------------

    def show_status(self, status: dict[str, Any] | None, linked: bool, reason: str = "") -> None:
        self.status = (status, linked, reason)
        if not self.ready:
            return  # on_mount shows it
        for bar in self.query(TillStatus):  # none once the app is closing: its widgets are gone
            bar.show(status, linked, reason)  # and the bar's own pills go before the bar
        if status is not None:
            self.app.sub_title = f"store {status.get('store')} · till {status.get('till')}"

    def show_scan(self, scan: dict[str, Any]) -> None:
        """A scan: a member card shows the member; a refused scan says why, plainly."""
        idle = self.query_one("#idle", Static)
        panel = self.query_one("#member", MemberPanel)
        if scan.get("kind") != "member":
            self.scan = None
            panel.display = False
            idle.display = True
            idle.update(IDLE_TEXT)
            refusal = scan_refusal(str(scan.get("error")), str(scan.get("message", "")))
            self.say(escape(refusal), "-error")
            return
        self.scan = scan
        panel.show(scan)
        idle.display = False
        panel.display = True
        self.say("")

    def say(self, text: str, kind: str = "") -> None:
        notice = self.query_one("#notice", Static)
        notice.update(text)
        notice.set_classes(kind)

    # -- the member in front of the till -----------------------------------------------

    def _member(self) -> dict[str, Any] | None:
        if self.scan is None or self.scan.get("refused"):
            return None
        member = self.scan.get("member")
        return member if isinstance(member, dict) else None

    def _ref(self) -> str | None:
        if self.scan is None or self.scan.get("refused"):
            return None
        member = self._member()
        return str(self.scan.get("card") or (member or {}).get("member_id") or "") or None

    def _who(self) -> str:
        member = self._member()
        if member is not None:
            return str(member.get("name") or member.get("member_id"))
        return f"card …{str((self.scan or {}).get('card', ''))[-4:]}"

    @work(thread=True, exclusive=True, group="member")
    def load_member(self, ref: str) -> None:
        try:
            member = self.client.get(f"/v1/members/{quote(ref, safe='')}")
        except LedgerError as error:
            self.post_message(MemberLoaded(None, error.message))
        else:
            self.post_message(MemberLoaded(member))

    @on(MemberLoaded)
    def _member_loaded(self, event: MemberLoaded) -> None:
        if event.member is None:
            self.say(escape(event.error), "-error")
            return
        member = event.member
        scan: dict[str, Any] = {"kind": "member", "card": member.get("card")}
        if member.get("member_id") is not None:
            scan["member"] = member
        notice = self.query_one("#notice", Static)
        text, classes = str(notice.content), notice.classes
        self.show_scan(scan)
        self.say(text, " ".join(classes))

    # -- the flows -----------------------------------------------------------------------

    def _open(self, screen: Any) -> None:
        self.app.push_screen(screen, self._finished)

    def _finished(self, outcome: Outcome | None) -> None:
        if outcome is None:
            return
        self.say(escape(outcome.text), "-good")
        if outcome.member_ref:
            self.load_member(outcome.member_ref)
        if outcome.ecard:
            self.app.push_screen(EcardScreen(outcome.ecard, outcome.name or ""))
        self.post_message(StatusStale())

    def _need_card(self) -> str | None:
        ref = self._ref()
        if ref is None:
            self.say("Swipe a member card first (or F5 to find the member by phone).", "-warn")
        return ref

    def action_earn(self) -> None:
        ref = self._need_card()
        if ref is not None:
            self._open(EarnScreen(self.client, ref, self._who(), cursor_blink=self.cursor_blink))

    def action_redeem(self) -> None:
        ref = self._need_card()
        member = self._member()
        if ref is None:
            return
        if member is None:
            self.say("This card is not enrolled here: enrol it (F4) before redeeming.", "-warn")
            return
        self._open(RedeemScreen(self.client, ref, member, cursor_blink=self.cursor_blink))

    def action_enrol(self) -> None:
        card = ""
        if self.scan is not None and self._member() is None and not self.scan.get("refused"):
            card = str(self.scan.get("card") or "")
        self._open(EnrolScreen(self.client, card, cursor_blink=self.cursor_blink))

    def action_lookup(self) -> None:
        self._open(LookupScreen(self.client, cursor_blink=self.cursor_blink))

    def action_refund(self) -> None:
        self._open(RefundScreen(self.client, cursor_blink=self.cursor_blink))

    def action_replace_card(self) -> None:
        member = self._member()
        ref = self._ref()
        if member is None or ref is None:
            self.say(
                "Find the member first: swipe the card, or F5 to look them up by phone.", "-warn"
            )
            return
        self._open(ReplaceCardScreen(self.client, ref, self._who(), cursor_blink=self.cursor_blink))

    def action_store_list(self) -> None:
        self.app.push_screen(StoreListScreen(self.client))

    # -- HQ's suggestions ------------------------------------------------------------

    def action_answer(self, outcome: str) -> None:
        """A / D / L: what the member answered to the suggestion shown first."""
        ref, shown = self._ref(), shown_suggestions(self._member())
        if ref is None or not shown:
            self.say("No suggestion from HQ is shown for a member.", "-warn")
            return
        self.say("Recording the answer…", "-busy")
        self._send_answer(ref, shown[0], outcome)

    @work(thread=True, exclusive=True, group="answer")
    def _send_answer(self, ref: str, suggestion: dict[str, Any], outcome: str) -> None:
        self.post_message(record_answer(self.client, ref, suggestion, outcome))

    @on(SuggestionAnswered)
    def _answered(self, answer: SuggestionAnswered) -> None:
        self.say(escape(answered_words(answer, self._who())), "-error" if answer.code else "-good")
        if answer.code:
            return
        self.post_message(StatusStale())
        member = self._member()
        self.load_member(answer.member_ref)  # the answered suggestion leaves the panel
        offer = answer.suggestion.get("offer")
        if answer.outcome == "accepted" and isinstance(offer, dict) and member is not None:
            # An accepted offer goes straight into the sale: the redeem form, with
            # the reward chosen.
            self._open(
                RedeemScreen(
                    self.client,
                    answer.member_ref,
                    member,
                    offer_id=str(offer.get("offer_id")),
                    cursor_blink=self.cursor_blink,
                )
            )

    def action_clear(self) -> None:
        self.scan = None
        self.query_one("#member", MemberPanel).display = False
        idle = self.query_one("#idle", Static)
        idle.update(IDLE_TEXT)
        idle.display = True
        self.say("")
