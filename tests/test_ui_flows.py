"""The cashier app against a real till agent (a subprocess, its reader on a pty):
every flow of issue #7 driven with Textual's Pilot, as a cashier would, by keys."""

from __future__ import annotations

import time

from textual.widgets import Input, Static

from tests.test_ui_support import (  # noqa: F401  (till_fixture: the `till` fixture)
    BANK_SWIPE,
    GARBLED_SWIPE,
    MEMBER_SWIPE,
    SUPERVISOR,
    SUPERVISOR_PIN,
    UNKNOWN_SWIPE,
    add_supervisor,
    pilot_test,
    text_of,
    till_fixture,
    wait_for,
)
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill
from ui.app import CashierApp
from ui.messages import StatusArrived
from ui.qr import modules
from ui.screens.ecard import EcardScreen
from ui.screens.lookup import LookupScreen
from ui.screens.supervisor import SupervisorScreen

UNKNOWN_CARD = "9900568732746027"


def make_app(till: SimulatedTill) -> CashierApp:
    return CashierApp(till.client.socket_path, cursor_blink=False, status_every_s=0)


async def start(app: CashierApp, pilot, till: SimulatedTill, swipe: bytes | None = MEMBER_SWIPE):
    await wait_for(pilot, lambda: app.linked and app.status is not None)
    if swipe is not None:
        till.swipe(swipe)
        await wait_for(pilot, lambda: app.counter.scan is not None)


async def type_into(pilot, text: str) -> None:
    await pilot.press(*text)


def notice(app: CashierApp) -> str:
    return text_of(app, "#notice")


@pilot_test
async def test_idle_screen_shows_prompt_reader_and_sync(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        await wait_for(pilot, lambda: "ready" in text_of(app, "#status-reader"))
        assert text_of(app, "#idle") == "Swipe or scan a member card"
        assert "card reader ready (serial)" in text_of(app, "#status-reader")
        assert "offline · never synced" in text_of(app, "#status-sync")
        assert not app.screen.query_one("#status-clock").display


@pilot_test
async def test_clock_warning_and_last_sync(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        status = dict(app.status or {})
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        app.post_message(StatusArrived({**status, "clock_ok": False, "last_sync": now}))
        await wait_for(pilot, lambda: app.screen.query_one("#status-clock").display)
        assert "clock looks wrong" in text_of(app, "#status-clock")
        assert text_of(app, "#status-sync").startswith("● online · last sync ")


@pilot_test
async def test_swipe_shows_the_member_at_once(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        started = time.perf_counter()
        till.swipe(MEMBER_SWIPE)
        await wait_for(pilot, lambda: text_of(app, "#member-name") == "Ann")
        elapsed = time.perf_counter() - started
        assert "basic" in text_of(app, "#member-tier")
        assert "9900 8358 4053 2866" in text_of(app, "#member-tier")
        balance = text_of(app, "#member-balance")
        assert "100" in balance and "1.00" in balance
        assert "Available 100" in text_of(app, "#member-available")
        assert not app.screen.query_one("#idle").display
        assert elapsed < 5  # a sanity bound only: the figure itself is tillpoints.bench_ui's
        await pilot.press("escape")
        assert app.screen.query_one("#idle").display


@pilot_test
async def test_refused_scans_say_why(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        for swipe, words in (
            (BANK_SWIPE, "bank card"),
            (GARBLED_SWIPE, "swipe it again"),
            (b";6000000042=9912?\r", "another programme"),
            (b";9900835840532869=3012?\r", "not valid"),
        ):
            till.swipe(swipe)
            await wait_for(pilot, lambda words=words: words in notice(app))
            assert app.counter.scan is None
            assert "4111" not in notice(app)
        till.swipe(UNKNOWN_SWIPE)
        await wait_for(pilot, lambda: "Not enrolled" in text_of(app, "#member-tier"))
        assert "9900 5687 3274 6027" in text_of(app, "#member-name")


@pilot_test
async def test_earn_with_a_total_then_with_lines(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till)
        await pilot.press("f2")
        await type_into(pilot, "R-1")
        await pilot.press("tab")
        await type_into(pilot, "12.30")
        await pilot.press("enter")
        assert "Earn for Ann on receipt R-1, total 12.30" in text_of(app, "#notice")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Earned" in notice(app))
        member = till.client.get(f"/v1/members/{DEMO_CARD}")
        assert f"new balance {member['balance']} points" in notice(app)
        await wait_for(
            pilot, lambda: f"[b]{member['balance']}[/b]" in text_of(app, "#member-balance")
        )

        await pilot.press("f2")
        await type_into(pilot, "R-2")
        await pilot.press("tab", "tab")
        app.screen.query_one("#lines", Input).value = "fresh:2:4.50, grocery:1:7.80"
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: "receipt R-2" in notice(app))
        assert till.client.get(f"/v1/members/{DEMO_CARD}")["balance"] > member["balance"]


@pilot_test
async def test_earn_refuses_bad_input_as_typed(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till)
        await pilot.press("f2")
        await type_into(pilot, "R-9")
        await pilot.press("tab")
        await type_into(pilot, "1e9")
        assert "not an amount" in text_of(app, "#amount-hint")
        await pilot.press("enter")
        assert "not an amount" in text_of(app, "#notice")
        await pilot.press("escape")
        assert app.screen is app.counter


@pilot_test
async def test_redeem_shows_the_maximum_and_the_value_taken_off(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till)
        await pilot.press("f3")
        assert "Available: [b]100[/b] points" in text_of(app, "#available")
        await type_into(pilot, "R-3")
        await pilot.press("tab")
        await type_into(pilot, "150")
        assert "at most 100" in text_of(app, "#points-hint")
        await pilot.press("backspace", "backspace", "backspace")
        await type_into(pilot, "100")
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: "Redeemed" in notice(app))
        assert "take 1.00 off receipt R-3" in notice(app)
        assert "new balance 0 points" in notice(app)


@pilot_test
async def test_redeem_refusal_is_shown_in_the_form(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till)
        await pilot.press("f3")
        await type_into(pilot, "R-4")
        await pilot.press("tab")
        await type_into(pilot, "50")
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: "smallest redemption" in text_of(app, "#notice"))
        assert app.screen is not app.counter


@pilot_test
async def test_enrol_validates_as_typed_and_shows_the_ecard_qr(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        await pilot.press("f4")
        await type_into(pilot, "Bo Chen")
        await pilot.press("tab")
        await type_into(pilot, "12")
        assert "6 to 15 digits" in text_of(app, "#phone-hint")
        await type_into(pilot, "34567")
        assert text_of(app, "#phone-hint") == ""
        await pilot.press("tab")
        await type_into(pilot, "2999-01-01")
        assert "in the future" in text_of(app, "#birthday-hint")
        await pilot.press(*["backspace"] * 10)
        await type_into(pilot, "1990-05-17")
        await pilot.press("tab", "space")  # marketing consent
        await pilot.press("enter")
        assert "Enrol Bo Chen with a new e-card" in text_of(app, "#notice")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EcardScreen))
        screen = app.screen
        assert isinstance(screen, EcardScreen)
        card = screen.card
        import segno

        code = segno.make(card, error="m", micro=False, boost_error=False)
        expected = [[bool(cell) for cell in row] for row in code.matrix]
        grid = modules(text_of(app, "#qr"))
        assert [row[4:-4] for row in grid[4 : 4 + len(expected)]] == expected
        await pilot.press("escape")
        await wait_for(pilot, lambda: text_of(app, "#member-name") == "Bo Chen")
        assert "Enrolled Bo Chen: e-card" in notice(app)
        assert till.client.get("/v1/lookup?phone=1234567")["card"] == card


@pilot_test
async def test_enrol_binds_the_next_swiped_card(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        await pilot.press("f4")
        await type_into(pilot, "Cy")
        await pilot.press("tab")
        await type_into(pilot, "+447700900123")
        till.swipe(BANK_SWIPE)
        await wait_for(pilot, lambda: "bank card" in text_of(app, "#notice"))
        till.swipe(UNKNOWN_SWIPE)
        await wait_for(pilot, lambda: app.screen.query_one("#card", Input).value == UNKNOWN_CARD)
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: "Enrolled Cy: card 9900 5687 3274 6027" in notice(app))
        await wait_for(pilot, lambda: text_of(app, "#member-name") == "Cy")


@pilot_test
async def test_lookup_by_phone_shows_the_member(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        await pilot.press("f5")
        await type_into(pilot, "555 000 0000")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "No member with this phone" in text_of(app, "#notice"))
        await pilot.press(*["backspace"] * 12)
        await type_into(pilot, "5551234567")
        await pilot.press("enter")
        # A phone key is a deliberately slow scrypt: the lookup screen stays up a moment.
        await wait_for(pilot, lambda: not isinstance(app.screen, LookupScreen))
        await wait_for(pilot, lambda: text_of(app, "#member-name") == "Ann")
        assert "Found Ann" in notice(app)


@pilot_test
async def test_refund_over_the_limit_asks_for_a_supervisor(till: SimulatedTill) -> None:
    add_supervisor(till)
    till.client.post("/v1/earn", {"member": DEMO_CARD, "receipt": "BIG-1", "amount": "250.00"})
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        await pilot.press("f6")
        await type_into(pilot, "BIG-1")
        await pilot.press("enter")
        assert "Refund the whole of receipt BIG-1" in text_of(app, "#notice")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SupervisorScreen))
        await type_into(pilot, SUPERVISOR)
        await pilot.press("tab")
        await type_into(pilot, "0000")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Wrong staff id or PIN" in text_of(app, "#notice"))
        await pilot.press("enter")  # review again
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SupervisorScreen))
        await type_into(pilot, SUPERVISOR)
        await pilot.press("tab")
        await type_into(pilot, SUPERVISOR_PIN)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Refunded 250.00 on receipt BIG-1" in notice(app))


@pilot_test
async def test_card_replacement_needs_a_supervisor_and_blocks_the_old_card(
    till: SimulatedTill,
) -> None:
    add_supervisor(till)
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till)
        swiped_at = time.monotonic()
        await pilot.press("f7")
        till.swipe(UNKNOWN_SWIPE)
        await wait_for(pilot, lambda: app.screen.query_one("#card", Input).value == UNKNOWN_CARD)
        await pilot.press("enter")
        assert "supervisor's PIN" in text_of(app, "#notice")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SupervisorScreen))
        await type_into(pilot, SUPERVISOR)
        await pilot.press("tab")
        await type_into(pilot, SUPERVISOR_PIN)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "is now Ann's card" in notice(app))
        await wait_for(pilot, lambda: "9900 5687 3274 6027" in text_of(app, "#member-tier"))
        # The reader reports the same card once within a second: wait that out.
        await pilot.pause(max(0.0, 1.2 - (time.monotonic() - swiped_at)))
        till.swipe(MEMBER_SWIPE)
        await wait_for(pilot, lambda: "blocked" in text_of(app, "#member-warning"))
        assert "replaced" in text_of(app, "#member-warning")
        await pilot.press("f2")
        assert app.screen is app.counter
        assert "Swipe a member card first" in notice(app)


@pilot_test
async def test_flows_that_need_a_member_say_so(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        for key in ("f2", "f3"):
            await pilot.press(key)
            assert app.screen is app.counter
            assert "Swipe a member card first" in notice(app)
        await pilot.press("f7")
        assert "Find the member first" in notice(app)


@pilot_test
async def test_agent_going_away_is_shown(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        till.stop()
        await wait_for(pilot, lambda: "agent not answering" in text_of(app, "#status-reader"))
        await pilot.press("f5")
        await type_into(pilot, "5551234567")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "not answering" in text_of(app, "#notice"))


@pilot_test
async def test_sync_key_runs_the_sync_command_and_shows_its_answer(till: SimulatedTill) -> None:
    app = make_app(till)
    app.sync = type(app.sync)(env=till.env)  # this till's state, not registered with HQ
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        await pilot.press("f9")
        await wait_for(pilot, lambda: "Sync failed" in notice(app), timeout=30)
        assert "register" in notice(app)


@pilot_test
async def test_theme_toggles_between_dark_and_light(till: SimulatedTill) -> None:
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till, swipe=None)
        first = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != first
        assert isinstance(app.screen.query_one("#idle"), Static)


@pilot_test
async def test_redeem_gives_an_hq_offer(till: SimulatedTill) -> None:
    """An offer HQ sent down (as a delta would store it) is picked on the redeem
    screen and given on the receipt; the journal records it once."""
    import datetime as dt
    import sqlite3

    today = dt.date.today()
    conn = sqlite3.connect(till.state / "ledger.db")
    with conn:
        member = conn.execute("SELECT member_id FROM members").fetchone()[0]
        conn.execute(
            "INSERT INTO hq_offers VALUES ('OF-1', ?, 'spring', 'voucher', '5.00', "
            "'5.00 off your shop', ?, ?)",
            (
                member,
                (today - dt.timedelta(days=1)).isoformat(),
                (today + dt.timedelta(days=9)).isoformat(),
            ),
        )
    conn.close()
    app = make_app(till)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot, till)
        await pilot.press("f3")
        await pilot.press("tab", "tab", "tab")  # receipt, points, total, the rewards
        await pilot.press("enter")  # picks the first reward and returns to the receipt
        await type_into(pilot, "R-OF")
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: "Reward given" in notice(app))
        assert "5.00 off your shop" in notice(app) and "worth 5.00" in notice(app)
    conn = sqlite3.connect(till.state / "ledger.db")
    kinds = [row[0] for row in conn.execute("SELECT kind FROM journal")]
    conn.close()
    assert kinds.count("offer_take") == 1
