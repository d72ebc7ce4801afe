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


# duplicate_s=0 in the tests below: what they show is the swipe rule, not the duplicate rule.
NO_DUPLICATES = DecoderSettings(duplicate_s=0.0)


def test_one_line_swipe_is_reported_at_its_terminator() -> None:
    decoder = ScanDecoder()
    [scan] = decoder.feed(f"%B{A}^X/Y^3012?;{A}=3012?\r".encode(), 1.0)
    assert scan.sources == ("track2", "track1") and scan.at == 1.0
    assert decoder.deadline() is None
    assert decoder.tick(1.2) == [] and decoder.finish() == []


def test_per_track_enter_reports_the_first_good_track_at_once() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    [scan] = decoder.feed(f"%B{A}^X/Y^3012?\r".encode(), 1.0)
    assert scan.card == A and scan.sources == ("track1",)
    assert decoder.deadline() is None  # nothing is waiting: no wake-up is due
    assert decoder.feed(f";{A}=3012?\r".encode(), 1.01) == []
    assert decoder.feed(f";01{A}=0000?\r".encode(), 1.02) == []  # ID TECH's ';' track 3
    assert decoder.tick(1.2) == [] and decoder.finish() == []


def test_error_track_then_good_track_gives_only_the_member() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    assert decoder.feed(b"%E?\r", 1.0) == []
    assert decoder.deadline() == 1.05
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.03)) == [A]
    assert decoder.deadline() is None
    assert decoder.tick(1.2) == [] and decoder.finish() == []


def test_good_track_then_error_tracks_give_only_the_member() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.0)) == [A]
    assert decoder.feed(b"%E?\r", 1.01) == []
    assert decoder.feed(b"+E?\r", 1.02) == []
    assert decoder.tick(1.2) == [] and decoder.finish() == []


def test_good_track_then_a_cut_track_gives_only_the_member() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    assert cards(decoder.feed(f"%B{A}^X/Y^3012?\r".encode(), 1.0)) == [A]
    assert decoder.feed(b";99008358\r", 1.01) == []
    assert decoder.finish() == []


def test_error_alone_is_reported_after_idle() -> None:
    decoder = ScanDecoder()
    assert decoder.feed(b"%E?;E?\r", 1.0) == []
    assert decoder.deadline() == 1.05
    assert decoder.tick(1.049) == []
    [scan] = decoder.tick(1.05)
    assert scan.error == "unreadable" and scan.at == 1.0


def test_good_track_after_the_window_is_another_swipe() -> None:
    decoder = ScanDecoder()
    assert decoder.feed(b"%E?\r", 1.0) == []
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.2)) == ["unreadable", A]


def test_two_cards_back_to_back_inside_the_window_are_two_scans() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.0)) == [A]
    assert cards(decoder.feed(f";{B}=3012?\r".encode(), 1.005)) == [B]
    assert cards(decoder.feed(f"%B{A}^X/Y^3012?\r".encode(), 1.01)) == [A]
    assert decoder.finish() == []


def test_same_card_swiped_again_is_one_scan_within_a_second() -> None:
    decoder = ScanDecoder()
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.0)) == [A]
    assert decoder.feed(f";{A}=3012?\r".encode(), 1.5) == []
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 2.1)) == [A]


def test_payment_card_verdict_is_at_once_and_its_other_tracks_absorbed() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    visa = "4111111111111111"
    assert cards(decoder.feed(f"%B{visa}^X/Y^3012?\r".encode(), 1.0)) == ["payment_card"]
    assert decoder.feed(f";{visa}=3012?\r".encode(), 1.01) == []
    assert decoder.finish() == []


def test_good_track_without_a_number_waits_for_a_numbered_one() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    assert decoder.feed(b"%AHELLO WORLD?\r", 1.0) == []
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.01)) == [A]
    assert decoder.feed(b"%AHELLO WORLD?\r", 2.0) == []
    assert cards(decoder.tick(2.1)) == ["foreign_card"]


def test_a_line_that_disagrees_with_itself_after_a_report_is_unreadable() -> None:
    decoder = ScanDecoder(NO_DUPLICATES)
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.0)) == [A]
    assert decoder.feed(f"+01{A}=0000?%B{B}^X/Y^3012?\r".encode(), 1.01) == []
    assert cards(decoder.finish()) == ["unreadable"]


def test_terminator_setting_reports_an_error_at_its_line_end() -> None:
    decoder = ScanDecoder(DecoderSettings(swipe_end="terminator"))
    assert cards(decoder.feed(b"%E?\r", 1.0)) == ["unreadable"]
    assert cards(decoder.feed(f";{A}=3012?\r".encode(), 1.01)) == [A]


def test_silence_separates_two_swipes_of_one_track_each() -> None:
    decoder = ScanDecoder()
    first = decoder.feed(f";{A}=3012?".encode(), 1.0)
    second = decoder.feed(f"%B{A}^X/Y^3012?".encode(), 5.0)
    assert cards(first) == []
    assert cards(second) == [A]
    assert second[0].source == "track2"
    assert cards(decoder.tick(5.1)) == [A]
    assert decoder.tick(5.2) == []


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
    assert decoder.feed(b"21088838A02\r", 10.1) == []


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
