"""F5: a member who forgot the card, found by phone (GET /v1/lookup?phone=)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from textual.app import ComposeResult

from ui import validate
from ui.messages import Outcome
from ui.screens.form import FormError, FormScreen, Request
from ui.texts import grouped
from ui.validate import Rule


class LookupScreen(FormScreen):
    HEADING = "Find a member by phone"
    CONFIRM = False  # reads only

    def fields(self) -> ComposeResult:
        yield from self.field("Phone", "phone", "the member's phone number", [Rule(validate.phone)])

    def request(self) -> Request:
        phone = self.value("phone")
        if not phone:
            raise FormError("phone", "Give the member's phone number.")
        return Request("GET", f"/v1/lookup?phone={quote(phone, safe='')}", None, "")

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        card = result.get("card")
        ref = str(card or result["member_id"])
        shown = f"card {grouped(str(card))}" if card else "no active card"
        return Outcome(f"Found {result.get('name')} ({shown})", member_ref=ref)
