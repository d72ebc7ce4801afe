"""The member panel: what the counter shows on a scan, from the scan event alone
(no second request), so it is on screen as soon as the event is."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static

from ui.answers import shown_suggestions, suggestion_lines
from ui.texts import grouped, scan_refusal


class MemberPanel(Vertical):
    """Shows one scan: a member, a programme card not enrolled here, or a blocked card."""

    def compose(self) -> ComposeResult:
        yield Static("", id="member-name")
        yield Static("", id="member-flags")
        yield Static("", id="member-tier")
        yield Static("", id="member-balance")
        yield Static("", id="member-available")
        yield Static("", id="member-expiring")
        yield Static("", id="member-offers")
        yield Static("", id="member-suggestions")
        yield Static("", id="member-warning")

    def _set(self, widget_id: str, text: str) -> None:
        widget = self.query_one(f"#{widget_id}", Static)
        widget.update(text)
        widget.display = bool(text)

    def show(self, scan: dict[str, Any]) -> None:
        card = str(scan.get("card") or "")
        member = scan.get("member")
        refused = scan.get("refused")
        for widget_id in (
            "member-flags",
            "member-tier",
            "member-balance",
            "member-available",
            "member-expiring",
            "member-offers",
            "member-suggestions",
            "member-warning",
        ):
            self._set(widget_id, "")
        if isinstance(refused, dict):
            self._set("member-name", f"Card {grouped(card)}")
            self._set(
                "member-warning",
                escape(scan_refusal(str(refused.get("error")), str(refused.get("message", "")))),
            )
            self.set_class(True, "-blocked")
            return
        self.set_class(False, "-blocked")
        if not isinstance(member, dict):
            self._set("member-name", f"Card {grouped(card)}")
            self._set(
                "member-tier",
                "Not enrolled on this till. Points can still be earned (F2) and reach the "
                "member's account at the next sync; enrol the card with F4.",
            )
            return
        self._set("member-name", escape(str(member.get("name") or "(no name)")))
        if member.get("birthday_month"):
            self._set("member-flags", "★ Birthday month: birthday points apply")
        self._set(
            "member-tier",
            f"[b]{escape(str(member.get('tier', '?')))}[/b] member · card "
            f"{grouped(str(member.get('card') or card))}",
        )
        self._set(
            "member-balance",
            f"Balance   [b]{member.get('balance', 0)}[/b] points, worth "
            f"[b]{escape(str(member.get('value', '?')))}[/b]",
        )
        self._set("member-available", f"Available {member.get('available', 0)} points to redeem")
        expiring = int(member.get("expiring_30d") or 0)
        if expiring:
            self._set("member-expiring", f"Expiring  {expiring} points in the next 30 days")
        offers = member.get("offers")
        if isinstance(offers, list) and offers:
            lines = [
                f"• {escape(str(offer.get('title', offer.get('offer_id', 'offer'))))}"
                for offer in offers
                if isinstance(offer, dict)
            ]
            self._set("member-offers", "Offers for this member:\n" + "\n".join(lines[:4]))
        suggestions = shown_suggestions(member)
        if suggestions:
            self._set("member-suggestions", suggestion_lines(suggestions))
