"""The UI's pure parts: event-stream framing, words for the cashier, the checks as
typed, the QR text, and the sync summary."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import segno

from tests.test_ui_support import pilot_test
from ui import validate
from ui.app import CashierApp
from ui.messages import LinkChanged, StatusArrived
from ui.qr import modules, qr_text
from ui.sse import EventParser, ServerEvent
from ui.sync_run import SyncCommand, summarise
from ui.texts import SCAN_REFUSALS, grouped, readers_state, scan_refusal, sync_state
from ui.validate import Rule


def test_event_stream_framing_in_any_chunks() -> None:
    stream = (
        b'event: hello\ndata: {"store": "S001"}\n\n: keep-alive\n\n'
        b'event: scan\r\ndata: {"kind": "member",\r\ndata: "card": "9"}\r\n\r\n'
        b"event: scan\ndata: not json\n\ndata: [1]\n\n"
    )
    for size in (1, 3, 7, len(stream)):
        parser = EventParser()
        events = []
        for start in range(0, len(stream), size):
            events += parser.feed(stream[start : start + size])
        assert events == [
            ServerEvent("hello", {"store": "S001"}),
            ServerEvent("scan", {"kind": "member", "card": "9"}),
        ]


def test_every_refusal_code_has_its_own_words() -> None:
    codes = ("unreadable", "payment_card", "foreign_card", "invalid_code", "expired_code")
    texts = {scan_refusal(code) for code in (*codes, "card_blocked")}
    assert len(texts) == 6
    assert "swipe it again" in scan_refusal("unreadable")
    assert "bank card" in scan_refusal("payment_card")
    assert "refresh" in scan_refusal("expired_code")
    assert "blocked" in SCAN_REFUSALS["card_blocked"]
    assert scan_refusal("new_code", "the agent's words") == "the agent's words"


def test_sync_and_reader_words() -> None:
    now = dt.datetime(2026, 3, 11, 10, 0, tzinfo=dt.UTC)
    assert sync_state(None, now) == (False, "offline · never synced")
    assert sync_state("2026-03-11T09:30:00+00:00", now) == (True, "online · last sync 09:30")
    online, words = sync_state("2026-03-01T09:30:00+00:00", now)
    assert not online and words == "offline · last sync 2026-03-01 09:30"
    assert readers_state([]) == (False, "no card reader configured")
    assert readers_state([{"kind": "serial", "connected": True}]) == (
        True,
        "card reader ready (serial)",
    )
    assert readers_state([{"kind": "hid", "connected": False}])[0] is False
    assert grouped("9900835840532866") == "9900 8358 4053 2866"


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (validate.phone, ["+447700900123", "555 123 4567", "123456"], ["12345", "abc", "+1" * 9]),
        (validate.birthday, ["1990-05-17"], ["2999-01-01", "1990-13-01", "17/05/1990"]),
        (validate.amount, ["12.30", "5"], ["1e9", "-1", "0.001", "NaN", "0"]),
        (validate.lines, ["fresh:2:4.50, grocery:1:7.80"], ["fresh:2", "fresh:1:1:1", "x:0:1"]),
        (validate.pin, ["4321"], ["12", "abcd", "1234567890123"]),
        (validate.card, ["9900835840532866"], ["99", "abc"]),
    ],
)
def test_field_checks_are_the_agents(check: object, good: list[str], bad: list[str]) -> None:
    rule = Rule(check)  # type: ignore[arg-type]
    for value in good:
        assert rule.validate(value).is_valid, value
    for value in bad:
        assert not rule.validate(value).is_valid, value
    assert Rule(check, optional=True).validate("").is_valid  # type: ignore[arg-type]


def test_points_check_caps_at_what_is_available() -> None:
    assert validate.points("100", 100) == 100
    assert not Rule(lambda text: validate.points(text, 100)).validate("101").is_valid


def test_qr_text_holds_the_whole_code_with_its_quiet_zone() -> None:
    text = qr_text("9900835840532866")
    code = segno.make("9900835840532866", error="m", micro=False, boost_error=False)
    grid = modules(text)
    size = len(code.matrix)
    assert len(text.splitlines()[0]) == size + 8
    assert not any(grid[0]) and not any(grid[3])
    assert [row[4 : 4 + size] for row in grid[4 : 4 + size]] == [
        [bool(cell) for cell in row] for row in code.matrix
    ]
    assert len(text.splitlines()) <= 16  # fits an 80x24 screen with room to spare


def test_sync_summary() -> None:
    ok = summarise(0, '{"uploaded": 3, "acked_seq": 5, "downloaded": 1}\n')
    assert ok.ok and ok.text == "Synced with HQ: 3 entries uploaded, 1 updates downloaded."
    failed = summarise(1, '{"error": "hq_unreachable", "message": "HQ did not answer"}')
    assert not failed.ok and failed.text == "Sync failed: HQ did not answer"
    assert summarise(1, "").text == "Sync failed: exit status 1"
    assert not SyncCommand(unavailable="no HQ").run().ok


@pilot_test
async def test_status_bar_ignores_a_status_after_its_pills_are_gone() -> None:
    """Closing the app removes the bar's pills before the bar; a status that arrives
    in between (the event stream or a status fetch still running) is dropped, not an
    error: seen in CI as a flaky crash at the end of a UI test."""
    from textual.app import App, ComposeResult

    from ui.widgets.till_status import TillStatus

    class Bar(App[None]):
        def compose(self) -> ComposeResult:
            yield TillStatus(id="bar")

    app = Bar()
    async with app.run_test() as pilot:
        bar = app.query_one(TillStatus)
        await bar.remove_children()
        await pilot.pause()
        bar.show({"readers": [], "unsynced": 2, "clock_ok": True}, True)
        bar.show(None, False)


def test_a_status_arriving_while_the_app_closes_is_dropped(tmp_path: Path) -> None:
    """The event stream can post a status after the app's screens are gone (seen in
    the demo test when the app exited mid-stream): it is kept, not shown, no crash."""
    app = CashierApp(tmp_path / "agent.sock", cursor_blink=False, status_every_s=0)
    assert not app.screen_stack
    app._status(StatusArrived({"store": "S001"}))
    app._link(LinkChanged(False, "closing"))
    assert app.status == {"store": "S001"} and not app.linked
