"""F2: points for a sale (POST /v1/earn): the receipt number, then its lines or its
total."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult

from agent.client import AgentClient
from ui import validate
from ui.messages import Outcome
from ui.screens.form import FormError, FormScreen, Request
from ui.validate import Rule


class EarnScreen(FormScreen):
    def __init__(
        self, client: AgentClient, member_ref: str, who: str, *, cursor_blink: bool = True
    ) -> None:
        super().__init__(client, cursor_blink=cursor_blink)
        self.member_ref, self.who = member_ref, who
        self.HEADING = f"Earn points · {who}"

    def fields(self) -> ComposeResult:
        yield from self.field("Receipt", "receipt", "receipt number", [Rule(validate.receipt)])
        yield from self.field("Total", "amount", "12.30", [Rule(validate.amount, optional=True)])
        yield from self.field(
            "or lines",
            "lines",
            "fresh:2:4.50, grocery:1:7.80",
            [Rule(validate.lines, optional=True)],
        )

    def request(self) -> Request:
        receipt, amount, lines = self.value("receipt"), self.value("amount"), self.value("lines")
        if not receipt:
            raise FormError("receipt", "Give the receipt number.")
        if bool(amount) == bool(lines):
            raise FormError("amount", "Give the receipt's total or its lines (not both).")
        body: dict[str, Any] = {"member": self.member_ref, "receipt": receipt}
        if lines:
            body["lines"] = validate.lines(lines)
            what = f"{len(body['lines'])} line(s)"
        else:
            body["amount"] = amount
            what = f"total {amount}"
        summary = f"Earn for {self.who} on receipt {receipt}, {what}."
        return Request("POST", "/v1/earn", body, summary)

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        again = " (this receipt was already recorded)" if result.get("replayed") else ""
        return Outcome(
            f"Earned {result['points']} points on receipt {result['receipt']}{again} · "
            f"new balance {result['balance']} points",
            member_ref=self.member_ref,
        )
