"""Demo only: choose a sample card to "swipe" on the simulated reader."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

# The fixtures' sample swipes (tests/fixtures/reader-samples.jsonl), as a serial
# reader sends them.
SAMPLES: dict[str, tuple[str, bytes]] = {
    "member": ("Ann's member card", b";9900835840532866=3012?\r"),
    "unknown": ("a programme card not enrolled here", b";9900568732746027=3012?\r"),
    "bank": ("a bank card, by mistake", b";4111111111111111=2512?\r"),
    "garbled": ("a garbled swipe", b"%E?;E?\r"),
}


class SwipePicker(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Back"),
        *(
            Binding(str(number), f"pick('{name}')", show=False)
            for number, name in enumerate(SAMPLES, 1)
        ),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="picker"):
            yield Static("Demo: swipe a sample card", id="heading")
            yield OptionList(
                *(
                    Option(f"{number}  {label}", id=name)
                    for number, (name, (label, _)) in enumerate(SAMPLES.items(), 1)
                ),
                id="samples",
            )
        yield Footer(compact=True, show_command_palette=False)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_pick(self, name: str) -> None:
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)
