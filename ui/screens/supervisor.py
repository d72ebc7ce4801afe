"""A supervisor's id and PIN, asked for where the agent requires them (card
replacement, refunds over the limit). The PIN goes to the agent in the request and
is kept nowhere else."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from ui import validate
from ui.validate import Rule


class SupervisorScreen(ModalScreen[tuple[str, str] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("f10", "submit", "Confirm"),
    ]

    def __init__(self, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="supervisor"):
            yield Static("Supervisor approval", id="heading")
            yield Static("A supervisor enters their staff id and PIN.", classes="hint -note")
            for label, field_id, rule, secret in (
                ("Supervisor id", "supervisor-id", validate.staff, False),
                ("PIN", "supervisor-pin", validate.pin, True),
            ):
                entry = Input(
                    id=field_id,
                    validators=[Rule(rule)],
                    validate_on=["changed"],
                    password=secret,
                    compact=True,
                )
                entry.cursor_blink = self.cursor_blink
                with Horizontal(classes="row"):
                    yield Label(label, classes="label")
                    yield entry
            yield Static("", id="notice")
        yield Footer(compact=True, show_command_palette=False)

    @on(Input.Submitted)
    def action_submit(self) -> None:
        staff = self.query_one("#supervisor-id", Input)
        pin = self.query_one("#supervisor-pin", Input)
        for entry in (staff, pin):
            result = entry.validate(entry.value)
            if result is not None and not result.is_valid:
                entry.focus()
                self.query_one("#notice", Static).update("; ".join(result.failure_descriptions))
                return
        self.dismiss((staff.value.strip(), pin.value))

    def action_cancel(self) -> None:
        self.dismiss(None)
