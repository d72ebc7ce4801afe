"""Snapshots of the cashier's main screens (pytest-textual-snapshot), 80x24, no
cursor blink. Against a real agent: what is on these screens is deterministic
(Ann's card and balance, "never synced", the journal count); no clock or member
id is shown. Update with `pytest tests/test_ui_snapshots.py --snapshot-update`
after looking at the new pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Input

from tests.suggestion_helpers import first_member, give_offer, hold, item
from tests.test_ui_support import (  # noqa: F401  (till_fixture: the `till` fixture)
    BANK_SWIPE,
    MEMBER_SWIPE,
    text_of,
    till_fixture,
    wait_for,
)
from tillpoints.simulated_till import SimulatedTill
from ui.app import CashierApp
from ui.screens.ecard import EcardScreen

UI = Path(__file__).resolve().parents[1] / "ui"


def make_app(till: SimulatedTill) -> CashierApp:
    return CashierApp(till.client.socket_path, cursor_blink=False, status_every_s=0)


async def _linked(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.linked and "ready" in text_of(app, "#status-reader"))


def _swiped(till: SimulatedTill, swipe: bytes = MEMBER_SWIPE, theme: str = "") -> Any:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        if theme:
            app.theme = theme
        await _linked(pilot)
        till.swipe(swipe)
        await wait_for(pilot, lambda: app.counter.scan is not None or text_of(app, "#notice"))
        await pilot.pause()

    return run_before


def test_idle_screen(snap_compare: Any, till: SimulatedTill) -> None:
    assert snap_compare(make_app(till), run_before=_linked)


def test_member_panel_dark(snap_compare: Any, till: SimulatedTill) -> None:
    assert snap_compare(make_app(till), run_before=_swiped(till))


def test_member_panel_light(snap_compare: Any, till: SimulatedTill) -> None:
    assert snap_compare(make_app(till), run_before=_swiped(till, theme="textual-light"))


def test_bank_card_refused(snap_compare: Any, till: SimulatedTill) -> None:
    assert snap_compare(make_app(till), run_before=_swiped(till, BANK_SWIPE))


def test_earn_review(snap_compare: Any, till: SimulatedTill) -> None:
    async def run_before(pilot: Any) -> None:
        await _swiped(till)(pilot)
        await pilot.press("f2", *"R-1", "tab", *"12.30", "enter")
        await pilot.pause()

    assert snap_compare(make_app(till), run_before=run_before)


def test_enrol_form_checks_as_typed(snap_compare: Any, till: SimulatedTill) -> None:
    async def run_before(pilot: Any) -> None:
        await _linked(pilot)
        await pilot.press("f4", *"Bo Chen", "tab", *"12x", "tab", *"2999-01-01")
        await pilot.pause()

    assert snap_compare(make_app(till), run_before=run_before)


def test_redeem_form(snap_compare: Any, till: SimulatedTill) -> None:
    async def run_before(pilot: Any) -> None:
        await _swiped(till)(pilot)
        await pilot.press("f3")
        await pilot.pause()
        pilot.app.screen.query_one("#receipt", Input).value = "R-2"
        await pilot.pause()

    assert snap_compare(make_app(till), run_before=run_before)


def hold_suggestions(till: SimulatedTill) -> None:
    """Ann's two suggestions, the first with its offer."""
    member = first_member(till.state)
    give_offer(till.state, member)
    hold(
        till.state,
        item(member, "sg-1", offer_id="GIFT-1"),
        item(member, "sg-2", reason="expiring_points", text="100 points expire this month", rank=2),
    )


def test_member_panel_with_suggestions(snap_compare: Any, till: SimulatedTill) -> None:
    hold_suggestions(till)

    async def run_before(pilot: Any) -> None:
        await _swiped(till)(pilot)
        await wait_for(pilot, lambda: "Birthday" in text_of(pilot.app, "#member-suggestions"))

    assert snap_compare(make_app(till), run_before=run_before)


def test_store_list(snap_compare: Any, till: SimulatedTill) -> None:
    hold_suggestions(till)

    async def run_before(pilot: Any) -> None:
        await _linked(pilot)
        await pilot.press("f12")
        await wait_for(pilot, lambda: "to contact" in text_of(pilot.app, "#notice"))
        await pilot.pause()

    assert snap_compare(make_app(till), run_before=run_before)


class EcardHarness(App[None]):
    """The e-card screen with a fixed card number (a real enrolment's e-card number
    depends on the till's random device id)."""

    CSS_PATH = str(UI / "app.tcss")

    def compose(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.push_screen(EcardScreen("9900012340000017", "Bo Chen"))


def test_ecard_qr(snap_compare: Any) -> None:
    assert snap_compare(EcardHarness())
