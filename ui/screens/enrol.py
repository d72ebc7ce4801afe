"""F4: enrolment at the counter (POST /v1/enroll). The card field fills from the
next swipe; left empty, the till issues an e-card, shown as a QR code."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Checkbox, Input

from agent.client import AgentClient
from ui import validate
from ui.messages import Outcome
from ui.screens.form import FormError, FormScreen, Request
from ui.texts import grouped, scan_refusal
from ui.validate import Rule


class EnrolScreen(FormScreen):
    HEADING = "Enrol a member"

    def __init__(self, client: AgentClient, card: str = "", *, cursor_blink: bool = True) -> None:
        super().__init__(client, cursor_blink=cursor_blink)
        self.card = card

    def fields(self) -> ComposeResult:
        yield from self.field("Name", "name", "as the member gives it", [Rule(validate.name)])
        yield from self.field("Phone", "phone", "+44 7700 900123", [Rule(validate.phone)])
        yield from self.field(
            "Birthday",
            "birthday",
            "YYYY-MM-DD (optional)",
            [Rule(validate.birthday, optional=True)],
        )
        yield from self.checkbox("Agrees to marketing messages", "consent")
        yield from self.field(
            "Card",
            "card",
            "swipe a card to bind it; empty: issue an e-card",
            [Rule(validate.card, optional=True)],
            value=self.card,
        )

    def accept_scan(self, scan: dict[str, Any]) -> bool:
        card = self.query_one("#card", Input)
        if scan.get("kind") != "member":
            self.say(scan_refusal(str(scan.get("error")), str(scan.get("message", ""))), "-error")
        elif isinstance(scan.get("member"), dict) or scan.get("refused"):
            self.say("This card already belongs to a member: swipe a new card.", "-error")
        else:
            card.value = str(scan.get("card"))
            self.say(f"Card {grouped(card.value)} will be bound to the new member.", "-good")
        return True

    def request(self) -> Request:
        name, phone = self.value("name"), self.value("phone")
        if not name:
            raise FormError("name", "Give the member's name.")
        if not phone:
            raise FormError("phone", "Give the member's phone number.")
        body: dict[str, Any] = {
            "name": name,
            "phone": phone,
            "consent_marketing": self.query_one("#consent", Checkbox).value,
        }
        if self.value("birthday"):
            body["birthday"] = self.value("birthday")
        card = self.value("card").replace(" ", "")
        if card:
            body["card"] = card
        what = f"card {grouped(card)}" if card else "a new e-card"
        return Request("POST", "/v1/enroll", body, f"Enrol {name} with {what}.")

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        name = str((request.body or {}).get("name", ""))
        ecard = result.get("card_kind") == "ecard"
        bonus = int(result.get("balance") or 0)
        return Outcome(
            f"Enrolled {name}: {'e-card' if ecard else 'card'} {grouped(result['card'])}"
            + (f" · welcome bonus {bonus} points" if bonus else ""),
            member_ref=str(result["card"]),
            ecard=str(result["card"]) if ecard else None,
            name=name,
        )
