"""F7: a new card for a member whose card was lost (POST /v1/card-replace). The new
card comes from the next swipe; a supervisor's id and PIN are always needed; the
old card is blocked."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Input

from agent.client import AgentClient
from ui import validate
from ui.messages import Outcome
from ui.screens.form import FormError, FormScreen, Request
from ui.texts import grouped, scan_refusal
from ui.validate import Rule


class ReplaceCardScreen(FormScreen):
    SUPERVISOR_FIELDS = ("staff", "pin")

    def __init__(
        self, client: AgentClient, member_ref: str, who: str, *, cursor_blink: bool = True
    ) -> None:
        super().__init__(client, cursor_blink=cursor_blink)
        self.member_ref, self.who = member_ref, who
        self.HEADING = f"Replace the card · {who}"

    def fields(self) -> ComposeResult:
        yield from self.field(
            "New card", "card", "swipe the new card", [Rule(validate.card, optional=True)]
        )

    def accept_scan(self, scan: dict[str, Any]) -> bool:
        if scan.get("kind") != "member":
            self.say(scan_refusal(str(scan.get("error")), str(scan.get("message", ""))), "-error")
        elif isinstance(scan.get("member"), dict) or scan.get("refused"):
            self.say("This card is already issued: swipe a new card.", "-error")
        else:
            self.query_one("#card", Input).value = str(scan.get("card"))
        return True

    def request(self) -> Request:
        card = self.value("card").replace(" ", "")
        if not card:
            raise FormError("card", "Swipe the new card.")
        body = {"member": self.member_ref, "card": card}
        return Request(
            "POST",
            "/v1/card-replace",
            body,
            f"Give {self.who} card {grouped(card)} and block the old card (supervisor's PIN).",
        )

    def confirm(self, request: Request) -> None:
        self.ask_supervisor(request)

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        return Outcome(
            f"Card {grouped(result['card'])} is now {self.who}'s card; the old card "
            f"{grouped(str(result.get('blocked') or ''))} is blocked",
            member_ref=str(result["card"]),
        )
