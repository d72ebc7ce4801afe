from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InvalidInput
from agent.money import MAX_MINOR, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "minor"),
    [("12.30", 1230), ("0.01", 1), ("5", 500), ("5.5", 550), ("10000000.00", MAX_MINOR)],
)
def test_amounts_parse_to_minor_units(text: str, minor: int) -> None:
    assert parse_amount(text) == minor


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "-1",
        "0.001",
        "1e9999",
        "1e3",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "１２",
        "1,000",
        "1 000",
        "+5",
        " 5",
        "5 ",
        "",
        ".5",
        "5.",
        "0",
        "0.00",
        "00.10",
        "10000000.01",
        "99999999999999999999",
        "١٢",
    ],
)
def test_bad_amounts_are_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(text, "amount")
    assert caught.value.code == "invalid_amount"
    assert caught.value.message.startswith("amount:")


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_amount(12.3)  # a float never becomes money
    with pytest.raises(InvalidInput):
        parse_amount(None)


@given(st.integers(min_value=1, max_value=MAX_MINOR))
def test_format_and_parse_round_trip(minor: int) -> None:
    assert parse_amount(format_amount(minor)) == minor


@given(st.text(max_size=20))
def test_arbitrary_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        minor = parse_amount(text)
    except InvalidInput:
        return
    assert 0 < minor <= MAX_MINOR
    assert format_amount(minor) in (text, text + "0", text + ".00")
