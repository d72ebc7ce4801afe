"""Timing rules of the sans-I/O decoder, driven by an injected clock."""

from __future__ import annotations

from drivers.decoder import DecoderSettings, ScanDecoder
from drivers.scan import Scan

A = "9900835840532866"
B = "9900568732746027"


def cards(scans: list[Scan]) -> list[str | None]:
    return [scan.card if scan.kind == "member" else scan.error for scan in scans]


def test_silence_ends_a_swipe_without_terminator() -> None:
    decoder = ScanDecoder(DecoderSettings(idle_s=0.05))
    assert decoder.feed(f";{A}=3012?".encode(), 10.0) == []
    assert decoder.deadline() == 10.05
    assert decoder.tick(10.04) == []
    assert cards(decoder.tick(10.05)) == [A]
    assert decoder.deadline() is None


def test_per_track_enter_waits_for_silence_then_joins_tracks() -> None:
    decoder = ScanDecoder()
    assert decoder.feed(f"%B{A}^X/Y^3012?\r".encode(), 1.0) == []
    assert decoder.feed(f";{A}=3012?\r".encode(), 1.01) == []
    [scan] = decoder.tick(1.2)
    assert scan.sources == ("track2", "track1")
    assert scan.source == "track2"


def test_silence_separates_two_swipes_of_one_track_each() -> None:
    decoder = ScanDecoder()
    first = decoder.feed(f";{A}=3012?\r".encode(), 1.0)
    second = decoder.feed(f"%B{A}^X/Y^3012?\r".encode(), 5.0)
    assert cards(first) == []
    assert cards(second) == [A]
    assert second[0].source == "track2"
    assert cards(decoder.tick(5.1)) == [A]


def test_duplicate_within_a_second_is_one_scan() -> None:
    decoder = ScanDecoder()
    assert cards(decoder.feed(f"{A}\r".encode(), 1.0)) == [A]
    assert decoder.feed(f"{A}\r".encode(), 1.005) == []
    assert decoder.feed(f"{A}\r".encode(), 1.9) == []
    assert cards(decoder.feed(f"{A}\r".encode(), 2.1)) == [A]


def test_different_codes_are_not_duplicates() -> None:
    decoder = ScanDecoder()
    out = decoder.feed(f"{A}\r{B}\r{A}\r".encode(), 1.0)
    assert cards(out) == [A, B, A]


def test_signon_only_within_its_window_after_open() -> None:
    decoder = ScanDecoder(DecoderSettings(signon_s=2.0))
    decoder.opened(100.0)
    assert decoder.feed(b"21088817A01\r", 100.15) == []
    decoder.opened(200.0)
    late = decoder.feed(b"21088817A01\r", 205.0)
    assert cards(late) == ["foreign_card"]


def test_signon_without_terminator_ended_by_silence() -> None:
    decoder = ScanDecoder()
    decoder.opened(0.0)
    assert decoder.feed(b"21088817A01", 0.15) == []
    assert decoder.tick(0.3) == []
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.0) + decoder.tick(1.1)) == [A]


def test_reopen_expects_a_new_signon() -> None:
    decoder = ScanDecoder()
    decoder.opened(0.0)
    assert cards(decoder.feed(f"{A}\r".encode(), 0.1)) == [A]
    decoder.opened(10.0)
    assert decoder.feed(b"SIGNON\r", 10.1) == []


def test_overlong_input_is_bounded_and_reported_once() -> None:
    decoder = ScanDecoder(DecoderSettings(max_line=128))
    for index in range(200):
        assert decoder.feed(b"9" * 1000, float(index) * 0.001) == []
        assert decoder.buffered <= 128
    out = decoder.feed(f"\r{A}\r".encode(), 0.3)
    assert cards(out) == ["unreadable", A]
    assert out[0].message and "too long" in out[0].message


def test_overlong_input_still_finds_a_multi_byte_suffix() -> None:
    decoder = ScanDecoder(DecoderSettings(max_line=64, suffix=b"!!"))
    out = decoder.feed(b"x" * 500 + b"!!" + f"{A}!!".encode(), 0.0)
    assert cards(out) == ["unreadable", A]


def test_interrupt_drops_a_partial_swipe() -> None:
    decoder = ScanDecoder()
    decoder.feed(f"%B{A}^X/Y^30".encode(), 0.0)
    assert decoder.interrupt() is True
    assert decoder.buffered == 0
    assert decoder.finish() == []
    assert decoder.interrupt() is False


def test_feed_runs_an_overdue_tick_first() -> None:
    """A shell that ticked late still frames by silence: old bytes end before new."""
    decoder = ScanDecoder()
    decoder.feed(f";{A}=3012?".encode(), 0.0)
    out = decoder.feed(f";{B}=3012?".encode(), 3.0)
    assert cards(out) == [A]
    assert cards(decoder.finish()) == [B]


def test_wall_clock_is_injected_for_dynamic_codes() -> None:
    from drivers.codes import make_dynamic_code

    secret = b"s"
    payload, _ = make_dynamic_code(B, secret, 1_000_000)
    fresh = ScanDecoder(DecoderSettings(qr_secret=secret), wall_clock=lambda: 1_000_000)
    stale = ScanDecoder(DecoderSettings(qr_secret=secret), wall_clock=lambda: 1_000_600)
    assert cards(fresh.feed(f"{payload}\r".encode(), 0.0)) == [B]
    assert cards(stale.feed(f"{payload}\r".encode(), 0.0)) == ["expired_code"]


def test_scan_json_shapes_are_exactly_the_contract() -> None:
    decoder = ScanDecoder()
    member, error = decoder.feed(f"{A}\r".encode(), 0.0) + decoder.feed(b"X\r", 0.0)
    assert member.to_json() == {"kind": "member", "card": A, "source": "qr"}
    assert set(error.to_json()) == {"kind", "error", "message"}
