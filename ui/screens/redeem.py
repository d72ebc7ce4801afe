"""F3: paying with points (POST /v1/redeem): points up to what is available, or a
reward from HQ's offers for this member when it sent any (POST /v1/offers/take:
a voucher or gift, or a points multiplier on this receipt)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.markup import escape
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from agent.client import AgentClient
from ui import validate
from ui.messages import Outcome
from ui.screens.form import FormError, FormScreen, Request
from ui.validate import Rule


class RedeemScreen(FormScreen):
    def __init__(
        self,
        client: AgentClient,
        member_ref: str,
        member: dict[str, Any],
        *,
        offer_id: str | None = None,
        cursor_blink: bool = True,
    ) -> None:
        """``offer_id``: a reward already chosen (the member accepted the suggestion
        that brings it)."""
        super().__init__(client, cursor_blink=cursor_blink)
        self.member_ref, self.member = member_ref, member
        self.available = int(member.get("available") or 0)
        self.offers = [offer for offer in member.get("offers") or [] if isinstance(offer, dict)]
        self.chosen: dict[str, Any] | None = next(
            (offer for offer in self.offers if offer_id and offer.get("offer_id") == offer_id),
            None,
        )
        self.HEADING = f"Redeem points · {member.get('name') or member_ref}"

    def fields(self) -> ComposeResult:
        yield Static(
            f"Available: [b]{self.available}[/b] points (balance {self.member.get('balance', 0)}"
            f", worth {escape(str(self.member.get('value', '?')))})",
            id="available",
        )
        yield from self.field("Receipt", "receipt", "receipt number", [Rule(validate.receipt)])
        yield from self.field(
            "Points",
            "points",
            f"at most {self.available}",
            # Optional here: a reward needs no points; request() asks for them otherwise.
            [Rule(lambda text: validate.points(text, self.available), optional=True)],
        )
        yield from self.field(
            "Receipt total",
            "amount",
            "optional: caps points at the rules' share",
            [Rule(validate.amount, optional=True)],
        )
        if self.offers:
            yield Static("Rewards for this member (Enter picks one):", classes="hint -note")
            yield OptionList(
                *(
                    Option(self._offer_text(offer), id=str(offer.get("offer_id", index)))
                    for index, offer in enumerate(self.offers)
                ),
                id="offers",
                compact=True,
            )
            yield Static("", id="chosen", classes="hint -note")

    def on_mount(self) -> None:
        if self.chosen is not None:
            self.query_one("#offers", OptionList).highlighted = self.offers.index(self.chosen)
            self._say_chosen()
            self.query_one("#receipt", Input).focus()

    def _say_chosen(self) -> None:
        assert self.chosen is not None
        self.query_one("#chosen", Static).update(
            f"Reward chosen: [b]{self._offer_text(self.chosen)}[/b] (give the receipt number)"
        )

    @staticmethod
    def _offer_text(offer: dict[str, Any]) -> str:
        title = escape(str(offer.get("title") or offer.get("offer_id") or "offer"))
        kind = offer.get("kind")
        cost = offer.get("points")
        return title + (f" ({kind})" if kind else "") + (f" · {cost} points" if cost else "")

    @on(OptionList.OptionSelected)
    def _offer_chosen(self, event: OptionList.OptionSelected) -> None:
        offer = self.offers[event.option_index]
        if offer.get("points") is not None:
            self.query_one("#points", Input).value = str(offer["points"])
        self.chosen = offer
        self._say_chosen()
        self.query_one("#receipt", Input).focus()

    def request(self) -> Request:
        receipt, points, amount = self.value("receipt"), self.value("points"), self.value("amount")
        if not receipt:
            raise FormError("receipt", "Give the receipt number.")
        if self.chosen is not None and not points:
            offer = str(self.chosen.get("offer_id"))
            title = str(self.chosen.get("title") or offer)
            return Request(
                "POST",
                "/v1/offers/take",
                {"member": self.member_ref, "offer": offer, "receipt": receipt},
                f"Give the reward '{title}' on receipt {receipt}.",
            )
        if not points:
            raise FormError("points", f"Give the points to redeem (at most {self.available}).")
        body: dict[str, Any] = {"member": self.member_ref, "receipt": receipt, "points": points}
        if amount:
            body["amount"] = amount
        return Request("POST", "/v1/redeem", body, f"Redeem {points} points on receipt {receipt}.")

    def outcome(self, result: dict[str, Any], request: Request) -> Outcome:
        if request.path == "/v1/offers/take":
            extra = f", +{result['points']} bonus points" if result.get("points") else ""
            worth = f" worth {result['value']}" if result.get("value") not in (None, "0.00") else ""
            return Outcome(
                f"Reward given: {result['title']}{worth}{extra} · balance {result['balance']} "
                "points",
                member_ref=self.member_ref,
            )
        return Outcome(
            f"Redeemed {result['points']} points: take {result['value']} off receipt "
            f"{result['receipt']} · new balance {result['balance']} points",
            member_ref=self.member_ref,
        )
