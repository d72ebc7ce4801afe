"""A new e-card as a QR code for the member to photograph or scan into the app."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ui.qr import qr_text
from ui.texts import grouped


class EcardScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("enter", "close", "Done", show=False),
    ]

    def __init__(self, card: str, name: str = "") -> None:
        super().__init__()
        self.card, self.member_name = card, name

    def compose(self) -> ComposeResult:
        with Vertical(id="ecard"):
            yield Static(
                f"E-card for {escape(self.member_name)}" if self.member_name else "E-card",
                id="heading",
            )
            yield Static(qr_text(self.card), id="qr")
            yield Static(grouped(self.card), id="ecard-number")
            yield Static("The member photographs this or adds it to the app.", classes="hint -note")
        yield Footer(compact=True, show_command_palette=False)

    def action_close(self) -> None:
        self.dismiss(None)
