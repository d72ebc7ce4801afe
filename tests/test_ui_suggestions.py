"""HQ's suggestions in the cashier app (issue 15), against a real till agent, at
80x24: the member panel shows the two that matter most and A / D / L record the
answer; an accepted offer opens the redeem form with the reward chosen; F12 is the
store's list for in-store advisors."""

from __future__ import annotations

import sqlite3
from typing import Any

from textual.widgets import DataTable

from tests.suggestion_helpers import first_member, give_offer, hold, item
from tests.test_ui_support import (  # noqa: F401  (till_fixture: the `till` fixture)
    MEMBER_SWIPE,
    pilot_test,
    text_of,
    till_fixture,
    wait_for,
)
from tillpoints.simulated_till import SimulatedTill
from ui.app import CashierApp
from ui.screens.redeem import RedeemScreen
from ui.screens.store_list import StoreListScreen


def make_app(till: SimulatedTill) -> CashierApp:
    return CashierApp(till.client.socket_path, cursor_blink=False, status_every_s=0)


def hold_three(till: SimulatedTill, *, offer: bool = False) -> None:
    """Ann's suggestions, the first with a gift when ``offer``."""
    member = first_member(till.state)
    if offer:
        give_offer(till.state, member)
    hold(
        till.state,
        item(member, "sg-1", offer_id="GIFT-1" if offer else ""),
        item(member, "sg-2", reason="expiring_points", text="100 points expire this month", rank=2),
        item(member, "sg-3", reason="lapsed", text="Not in since the summer", rank=3),
    )


def journal_kinds(till: SimulatedTill) -> list[str]:
    conn = sqlite3.connect(till.state / "ledger.db")
    try:
        return [str(row[0]) for row in conn.execute("SELECT kind FROM journal ORDER BY seq")]
    finally:
        conn.close()


async def swiped(app: CashierApp, pilot: Any, till: SimulatedTill) -> None:
    await wait_for(pilot, lambda: app.linked and app.status is not None)
    till.swipe(MEMBER_SWIPE)
    await wait_for(pilot, lambda: app.counter.scan is not None)


@pilot_test
async def test_the_panel_shows_two_suggestions_and_a_key_records_the_answer(
    till: SimulatedTill,
) -> None:
    hold_three(till)
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await swiped(app, pilot, till)
        shown = text_of(app, "#member-suggestions")
        assert "▶ Birthday coming: Birthday in 5 days: wish them well" in shown
        assert "Points about to expire: 100 points expire this month" in shown
        assert "Not in since" not in shown and "{" not in shown
        assert "[b]A[/b] accepted" in shown
        await pilot.press("l")
        await wait_for(pilot, lambda: "recorded that Ann would think" in text_of(app, "#notice"))
        await wait_for(
            pilot, lambda: "▶ Points about to expire" in text_of(app, "#member-suggestions")
        )
        assert "Birthday" not in text_of(app, "#member-suggestions")
        assert "Not in since the summer" in text_of(app, "#member-suggestions")
        assert journal_kinds(till).count("suggestion_answer") == 1


@pilot_test
async def test_an_accepted_offer_opens_the_redeem_form_with_the_reward_chosen(
    till: SimulatedTill,
) -> None:
    hold_three(till, offer=True)
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await swiped(app, pilot, till)
        assert "· offer: A coffee mug" in text_of(app, "#member-suggestions")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, RedeemScreen))
        assert "Reward chosen: [b]A coffee mug (gift)[/b]" in text_of(app, "#chosen")
        await pilot.press(*"R-GIFT", "enter")
        assert "Give the reward 'A coffee mug' on receipt R-GIFT" in text_of(app, "#notice")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Reward given: A coffee mug" in text_of(app, "#notice"))
    kinds = journal_kinds(till)
    assert kinds.count("suggestion_answer") == 1 and kinds.count("offer_take") == 1


@pilot_test
async def test_answer_keys_without_a_suggestion_say_so_and_write_nothing(
    till: SimulatedTill,
) -> None:
    app = make_app(till)
    before = journal_kinds(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await swiped(app, pilot, till)
        assert not app.screen.query_one("#member-suggestions").display
        await pilot.press("d")
        assert "No suggestion from HQ" in text_of(app, "#notice")
    assert journal_kinds(till) == before


@pilot_test
async def test_the_store_list_shows_todays_suggestions_and_records_answers(
    till: SimulatedTill,
) -> None:
    hold_three(till, offer=True)
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.linked and app.status is not None)
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, StoreListScreen))
        table = app.screen.query_one("#store-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        first = [str(cell) for cell in table.get_row_at(0)]
        assert first == ["Ann", "Birthday coming", "A coffee mug", "2026-11-20"]
        assert "Birthday in 5 days" in text_of(app, "#list-text")
        screen_text = " ".join(str(cell) for row in range(3) for cell in table.get_row_at(row))
        assert "555" not in screen_text  # no phone number
        await pilot.press("down")
        await wait_for(pilot, lambda: "100 points expire" in text_of(app, "#list-text"))
        await pilot.press("d")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert "recorded that Ann declined" in text_of(app, "#notice")
        await pilot.press("escape")
        assert not isinstance(app.screen, StoreListScreen)
    assert journal_kinds(till).count("suggestion_answer") == 1
