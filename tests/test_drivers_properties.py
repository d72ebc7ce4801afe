"""Properties of the decoders over generated input (hypothesis).

- arbitrary bytes and arbitrary key-event streams never raise, never hang, and never
  hold more than ``max_line`` bytes;
- a Luhn-valid payment number embedded in any track layout, garbled or not, framed
  any way, typed or sent as bytes, never appears in any output: not the number, not
  any 8 consecutive digits of it.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.cards import is_payment_card, luhn_digit
from drivers.decoder import DecoderSettings, ScanDecoder
from drivers.keys import KeyEvent
from drivers.scan import Scan
from tests.wedge_typing import type_text

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(FAST, max_examples=1500)

NETWORKS = [
    ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
    ("34", 15), ("37", 15), ("62", 16), ("62", 19), ("3528", 16), ("3589", 16),
    ("6011", 16), ("644", 16), ("65", 16), ("300", 14), ("36", 14), ("38", 14),
    ("50", 12), ("50", 19), ("56", 16), ("69", 19), ("6703", 17), ("2200", 16), ("1", 15),
    ("31", 19), ("81", 16), ("9792", 16), ("9860", 16), ("8600", 16), ("1800", 15),
]  # fmt: skip


@st.composite
def payment_numbers(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(NETWORKS))
    body = prefix + draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                                 max_size=length - len(prefix) - 1))  # fmt: skip
    number = body + luhn_digit(body)
    assert is_payment_card(number)
    return number


LAYOUTS_OF_A_NUMBER = [
    "%B{n}^DOE/JANE^2512101000?",
    ";{n}=2512101?",
    ";{n}?",
    "%B{n}^DOE/JANE^2512101?;{n}=2512101?",
    "%E?;{n}=2512101?",
    "%B{n}^DOE/JANE^2512?;E?",
    "+01{n}=0000?",
    ";01{n}=0000?",
    "{n}",
    "]Q1{n}",
    "TP1.{n}.58766666.AAAAAAAAAAAAAAAA",
    "\x02;{n}=2512?\x03",
    "\x02%B{n}^X/Y^25?!\x10\x02;{n}=25?0\x10\x03",
    "{n}=2512101",
    "%B {n} ^DOE/JANE^2512101?",
]
FRAMES = ["\r", "\n", "\r\n", "\t", "", "\x03", "\x10", "\r\r"]
JUNK = st.text(alphabet="%;+?=^E /ABXYZ\x00\x1b\x02\x03", max_size=4)


@st.composite
def streams_with_payment_cards(draw: st.DrawFn) -> tuple[str, str]:
    number = draw(payment_numbers())
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        text = draw(st.sampled_from(LAYOUTS_OF_A_NUMBER)).format(n=number)
        cut = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:cut] + draw(JUNK) + text[cut:]
        elif draw(st.booleans()):
            text = text[:cut]
        pieces.append(text + draw(st.sampled_from(FRAMES)))
    return number, "".join(pieces)


def forbidden(number: str) -> set[str]:
    return {number} | {number[i : i + 8] for i in range(len(number) - 7)}


def everything_shown(scans: list[Scan]) -> str:
    return json.dumps([scan.to_json() for scan in scans]) + repr(scans) + str(scans)


def assert_no_digits_of(number: str, shown: str) -> None:
    for piece in forbidden(number):
        assert piece not in shown


decoder_settings = st.builds(
    DecoderSettings,
    lrc=st.booleans(),
    prefix=st.sampled_from([b"", b"#", b"\x1b["]),
    suffix=st.sampled_from([b"", b"!!", b"\x04"]),
    swipe_end=st.sampled_from(["idle", "terminator"]),
    max_line=st.integers(64, 600),
)


@THOROUGH
@given(stream=streams_with_payment_cards(), options=decoder_settings, data=st.data())
def test_payment_numbers_never_leave_the_byte_decoder(
    stream: tuple[str, str], options: DecoderSettings, data: st.DataObject
) -> None:
    number, text = stream
    decoder = ScanDecoder(options)
    raw = text.encode("latin-1")
    scans: list[Scan] = []
    position, now = 0, 0
    while position < len(raw):
        size = data.draw(st.integers(1, 64))
        now += data.draw(st.integers(0, 120))
        scans += decoder.feed(raw[position : position + size], now / 1000)
        scans += decoder.tick((now + data.draw(st.integers(0, 80))) / 1000)
        position += size
    scans += decoder.finish()
    assert_no_digits_of(number, everything_shown(scans))


TYPEABLE = set("0123456789%;+?=^/ ABDEJNOQXYZ]\r")


@THOROUGH
@given(stream=streams_with_payment_cards())
def test_payment_numbers_never_leave_the_keyboard_decoder(stream: tuple[str, str]) -> None:
    number, text = stream
    typed = "".join(char for char in text if char in TYPEABLE)
    events = type_text(typed, step=0.002)
    decoder = ScanDecoder(DecoderSettings(signon_s=0.0))
    scans = decoder.feed_events(events) + decoder.finish()
    assert_no_digits_of(number, everything_shown(scans))


@FAST
@given(
    chunks=st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 200)), max_size=30),
    options=decoder_settings,
)
def test_arbitrary_bytes_never_raise_and_stay_bounded(
    chunks: list[tuple[bytes, int]], options: DecoderSettings
) -> None:
    decoder = ScanDecoder(options)
    now = 0
    for chunk, gap in chunks:
        now += gap
        for scan in decoder.feed(chunk, now / 1000):
            assert set(scan.to_json()) in ({"kind", "card", "source"}, {"kind", "error", "message"})
        assert decoder.buffered <= options.max_line
        deadline = decoder.deadline()
        assert deadline is None or deadline >= now / 1000
    decoder.finish()
    assert decoder.buffered == 0


key_events = st.builds(
    KeyEvent,
    time=st.just(0.0),
    type=st.sampled_from([0, 1, 1, 1, 4, 2, 17]),
    code=st.one_of(st.integers(0, 120), st.sampled_from([0, 3, 28, 42, 54, 58, 96, 100])),
    value=st.integers(-1, 3),
)


@FAST
@given(events=st.lists(st.tuples(key_events, st.integers(0, 100)), max_size=400))
def test_arbitrary_key_events_never_raise_and_stay_bounded(
    events: list[tuple[KeyEvent, int]],
) -> None:
    decoder = ScanDecoder(DecoderSettings(max_line=128))
    now = 0
    for event, gap in events:
        now += gap
        decoder.feed_events([event], now / 1000)
        assert decoder.buffered <= 128
    decoder.finish()


@pytest.mark.timeout(60)
def test_a_megabyte_without_terminator_is_cut_safely(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    decoder = ScanDecoder()
    number = "4111111111111111"
    block = f";{number}=2512?".encode() * 4096
    scans = []
    for index in range(50):
        scans += decoder.feed(block[:20000], index * 0.001)
        assert decoder.buffered <= 512
    scans += decoder.finish()
    assert [scan.error for scan in scans] == ["unreadable"]
    assert_no_digits_of(number, everything_shown(scans) + caplog.text)
