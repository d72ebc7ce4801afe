"""Tracks, LRC and member codes: the pure pieces under the decoder."""

from __future__ import annotations

import pytest

from drivers.cards import DEFAULT_POLICY, CardClass, CardPolicy, luhn_digit
from drivers.codes import (
    SKEW_WINDOWS,
    WINDOW_S,
    decode_code,
    make_dynamic_code,
    member_key,
    sign_code,
    strip_aim,
    verify_dynamic_code,
)
from drivers.tracks import RawTrack, lrc_char, parse_track, split_tracks

SECRET = b"chain secret for tests"
CARD = "9900568732746027"


def test_lrc_by_hand() -> None:
    # ';'=0xB ^1^2^3^4^5 ^'?'=0xF -> 0x5 -> '5'  (4-bit characters above 0x30)
    assert lrc_char(";", "12345") == "5"
    # '%'=0x05 ^'A'=0x21 ^'?'=0x1F -> 0x3B -> '['  (6-bit characters above 0x20)
    assert lrc_char("%", "A") == "["


def test_split_tracks_consumes_the_lrc_even_when_it_looks_like_a_sentinel() -> None:
    tracks, junk = split_tracks(";1?;;2?" + lrc_char(";", "2"), lrc=True)
    assert not junk
    assert [t.body for t in tracks] == ["1", "2"]
    assert tracks[0].fault == "bad_lrc"
    assert tracks[1].fault is None


def test_split_tracks_marks_a_missing_end_sentinel() -> None:
    tracks, junk = split_tracks("%B123;456?", lrc=False)
    assert [(t.sentinel, t.fault) for t in tracks] == [("%", "garbled"), (";", None)]
    assert not junk


def test_track_reads_of_a_payment_card_keep_no_digits() -> None:
    read = parse_track(2, RawTrack(";", "4111111111111111=2512"), DEFAULT_POLICY)
    assert read.card_class is CardClass.PAYMENT_CARD
    assert read.card is None
    assert "4111" not in repr(read)
    assert "4111" not in repr(RawTrack(";", "4111111111111111=2512"))


def test_track3_number_follows_its_format_code() -> None:
    read = parse_track(3, RawTrack("+", f"01{CARD}=0000"), DEFAULT_POLICY)
    assert read.card == CARD


def test_configured_prefixes() -> None:
    policy = CardPolicy(prefixes=("7777",), length=10)
    good = "777700000" + luhn_digit("777700000")
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert parse_track(2, RawTrack(";", good), policy).card_class is CardClass.MEMBER
    assert parse_track(2, RawTrack(";", bad), policy).card_class is CardClass.INVALID_CODE


@pytest.mark.parametrize("text", ["]Q1123", "]C0123", "]e0123"])
def test_strip_aim(text: str) -> None:
    assert strip_aim(text) == "123"


def test_strip_aim_leaves_other_text() -> None:
    assert strip_aim("]1x123") == "]1x123"
    assert strip_aim("123") == "123"


def test_dynamic_code_round_trip_and_shape() -> None:
    now = 1_763_000_017.5
    payload, valid_until = make_dynamic_code(CARD, SECRET, now)
    window = int(now) // WINDOW_S
    assert payload.startswith(f"TP1.{CARD}.{window}.")
    assert payload.isascii() and payload == payload.upper()
    assert valid_until == (window + SKEW_WINDOWS + 1) * WINDOW_S - 1
    scan = verify_dynamic_code(payload, SECRET, now, DEFAULT_POLICY, at=0.0)
    assert scan.to_json() == {"kind": "member", "card": CARD, "source": "qr_dynamic"}


def test_dynamic_code_rotates_every_window() -> None:
    first, _ = make_dynamic_code(CARD, SECRET, 1_000_000_000)
    second, _ = make_dynamic_code(CARD, SECRET, 1_000_000_000 + WINDOW_S)
    assert first != second
    assert WINDOW_S <= 60


def test_dynamic_code_accepted_until_valid_until_and_not_after() -> None:
    payload, valid_until = make_dynamic_code(CARD, SECRET, 1_000_000_000)
    last = verify_dynamic_code(payload, SECRET, valid_until, DEFAULT_POLICY, 0.0)
    after = verify_dynamic_code(payload, SECRET, valid_until + 1, DEFAULT_POLICY, 0.0)
    assert last.kind == "member"
    assert after.error == "expired_code"


def test_phone_signs_with_its_member_key_only() -> None:
    payload, _ = sign_code(member_key(SECRET, CARD), CARD, 1_000_000_000)
    assert verify_dynamic_code(payload, SECRET, 1_000_000_000, DEFAULT_POLICY, 0.0).card == CARD
    other = "9900835840532866"
    forged = payload.replace(CARD, other)
    assert verify_dynamic_code(forged, SECRET, 1_000_000_000, DEFAULT_POLICY, 0.0).error == (
        "invalid_code"
    )


def test_dynamic_code_without_a_secret_is_invalid() -> None:
    payload, _ = make_dynamic_code(CARD, SECRET, 1_000_000_000)
    scan = verify_dynamic_code(payload, None, 1_000_000_000, DEFAULT_POLICY, 0.0)
    assert scan.error == "invalid_code"


def test_dynamic_code_for_a_non_member_number_is_invalid() -> None:
    payload, _ = make_dynamic_code("4111111111111111", SECRET, 1_000_000_000)
    scan = verify_dynamic_code(payload, SECRET, 1_000_000_000, DEFAULT_POLICY, 0.0)
    assert scan.error == "invalid_code"
    assert "4111" not in str(scan.to_json())


def test_make_dynamic_code_refuses_non_digits() -> None:
    with pytest.raises(ValueError):
        make_dynamic_code("99OO", SECRET, 0)


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "unreadable"), ("\x1a123", "unreadable"), ("]Q1", "unreadable"), ("ABC", "foreign_card")],
)
def test_decode_code_errors(text: str, error: str) -> None:
    assert decode_code(text, DEFAULT_POLICY, None, 0.0, 0.0).error == error
