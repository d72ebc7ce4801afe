"""Keyboard-wedge decoding from key events and evtest captures."""

from __future__ import annotations

import pytest

from drivers.decoder import DecoderSettings, ScanDecoder, decode_events
from drivers.errors import DriverError
from drivers.evtest import parse_evtest
from drivers.keys import EV_KEY, EV_SYN, SYN_DROPPED, SYN_REPORT, KeyEvent
from drivers.layouts import LAYOUTS
from tests.wedge_typing import format_evtest, type_text

A = "9900835840532866"
SWIPE = f"%B{A}^DOE/JANE^3012?;{A}=3012?\r"


def decode(events: list[KeyEvent], layout: str = "us") -> list[dict[str, str]]:
    settings = DecoderSettings(layout=layout, signon_s=0.0)
    return [scan.to_json() for scan in decode_events(events, settings)]


MEMBER = [{"kind": "member", "card": A, "source": "track2"}]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_decodes_its_own_typing(layout: str) -> None:
    assert decode(type_text(SWIPE, layout), layout) == MEMBER


def test_german_typing_read_with_a_us_table_is_not_a_member() -> None:
    assert decode(type_text(SWIPE, "de"), "us") != MEMBER


def test_autorepeat_is_ignored() -> None:
    events = type_text(SWIPE)
    repeated = []
    for event in events:
        repeated.append(event)
        if event.type == EV_KEY and event.value == 1:
            repeated.append(KeyEvent(event.time, EV_KEY, event.code, 2))
    assert decode(repeated) == MEMBER


def test_keypad_enter_ends_a_line() -> None:
    events = [
        KeyEvent(e.time, e.type, 96 if e.code == 28 and e.type == EV_KEY else e.code, e.value)
        for e in type_text(f"{A}\r")
    ]
    assert decode(events) == [{"kind": "member", "card": A, "source": "qr"}]


def test_keypad_digits() -> None:
    keypad = {"0": 82, "1": 79, "2": 80, "3": 81, "4": 75, "5": 76, "6": 77, "8": 72, "9": 73}
    events = []
    for index, char in enumerate(A):
        t = index * 0.003
        events += [KeyEvent(t, EV_KEY, keypad[char], 1), KeyEvent(t, EV_KEY, keypad[char], 0)]
    events.append(KeyEvent(0.1, EV_KEY, 96, 1))
    assert decode(events) == [{"kind": "member", "card": A, "source": "qr"}]


def test_shift_released_before_the_shifted_keys_own_key_up() -> None:
    t = 0.0
    events = [
        KeyEvent(t, EV_KEY, 42, 1),
        KeyEvent(t, EV_KEY, 6, 1),  # '%'
        KeyEvent(t, EV_KEY, 42, 0),
        KeyEvent(t, EV_KEY, 6, 0),
    ]
    events += type_text(SWIPE[1:], start=0.003)
    assert decode(events) == MEMBER


def test_caps_lock_inverts_letters_only() -> None:
    events = [KeyEvent(0.0, EV_KEY, 58, 1), KeyEvent(0.0, EV_KEY, 58, 0)]
    lower = SWIPE.replace("DOE/JANE", "doe/jane").replace("%B", "%b")
    events += type_text(lower, start=0.1)
    assert decode(events) == MEMBER


def test_unknown_key_makes_the_swipe_unreadable() -> None:
    events = type_text(f";{A}", start=0.0)
    t = events[-1].time
    events += [KeyEvent(t, EV_KEY, 240, 1), KeyEvent(t, EV_KEY, 240, 0)]
    events += type_text("=3012?\r", start=t + 0.003)
    assert [s["error"] for s in decode(events)] == ["unreadable"]


def test_syn_dropped_loses_the_partial_swipe_and_reports_it() -> None:
    events = type_text(SWIPE[:20])
    events.append(KeyEvent(0.5, EV_SYN, SYN_DROPPED, 0))
    events.append(KeyEvent(0.5, EV_KEY, 42, 1))  # discarded until SYN_REPORT
    events.append(KeyEvent(0.5, EV_SYN, SYN_REPORT, 0))
    events += type_text(SWIPE, start=2.0)
    out = decode(events)
    assert [item.get("error") for item in out] == ["unreadable", None]
    assert out[1] == MEMBER[0]


def test_modifier_state_is_reread_after_syn_dropped() -> None:
    decoder = ScanDecoder(DecoderSettings(signon_s=0.0))
    decoder.feed_events([KeyEvent(0, EV_KEY, 42, 1), KeyEvent(0, EV_SYN, SYN_DROPPED, 0)])
    decoder.feed_events([KeyEvent(0, EV_SYN, SYN_REPORT, 0)])
    decoder.keys_held([42])
    decoder.feed_events([KeyEvent(0.1, EV_KEY, 6, 1), KeyEvent(0.1, EV_KEY, 42, 0)])  # '%'
    scans = decoder.feed_events(type_text(SWIPE[1:], start=0.103)) + decoder.finish()
    assert [s.to_json() for s in scans] == MEMBER


def test_evtest_round_trip() -> None:
    text = format_evtest(type_text(SWIPE))
    assert decode(parse_evtest(text)) == MEMBER


def test_evtest_syn_dropped_line() -> None:
    text = "Event: time 1.000000, >>>>>>>>>>>>>> SYN_DROPPED <<<<<<<<<<<<\n"
    assert parse_evtest(text) == [KeyEvent(1.0, EV_SYN, SYN_DROPPED, 0)]


@pytest.mark.parametrize(
    "text",
    [
        "Event: time 1.0, type 1 (EV_KEY), code x (KEY_A), value 1\n",
        "Event: garbage\n",
        "just some text\nwith no events\n",
        "Event: time 1.0, type 1 (EV_KEY), code 30 (KEY_A), value " + "9" * 5000 + "\n",
    ],
)
def test_malformed_evtest_is_refused(text: str) -> None:
    with pytest.raises(DriverError) as raised:
        parse_evtest(text)
    assert raised.value.exit_status == 2
    assert raised.value.code == "invalid_capture"


def test_evtest_header_only_is_an_empty_capture() -> None:
    assert parse_evtest("Input driver version is 1.0.1\nTesting ... (interrupt to exit)\n") == []
