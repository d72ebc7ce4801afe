"""F6: a refund by receipt number (POST /v1/refund): the whole receipt, or some of
its lines. Over the rules' limit the agent asks for a supervisor, and so do we."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult

from ui import validate
from ui.messages import Outcome
from ui.screens.form import FormError, FormScreen, Request
from ui.validate import Rule


class RefundScreen(FormScreen):
    HEADING = "Refund a receipt"
    SUPERVISOR_FIELDS = ("supervisor", "pin")

    def fields(self) -> ComposeResult:
        yield from self.field("Receipt", "receipt", "receipt number", [Rule(validate.receipt)])
        yield from self.field(
            "Lines",
            "lines",
            "empty: the whole receipt; or fresh:1:4.50, ...",
            [Rule(validate.lines, optional=True)],
        )

    def request(self) -> Request:
        receipt, lines = self.value("receipt"), self.value("lines")
        if not receipt:
            raise FormError("receipt", "Give the receipt number.")
        body: dict[str, Any] = {"receipt": receipt}
        if lines:
            body["lines"] = validate.lines(lines)
        what = f"{len(body['lines'])} line(s) of" if lines else "the whole of"
        return Request("POST", "/v1/refund", body, f"Refund {what} receipt {receipt}.")

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        negative = result.get("negative")
        warning = " · the balance is negative: HQ will follow it up" if negative else ""
        return Outcome(
            f"Refunded {result.get('refunded', '')} on receipt {result['receipt']}: points "
            f"{int(result['points']):+d} · balance {result['balance']}{warning}",
            member_ref=result.get("member_id"),
        )
