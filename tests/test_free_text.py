"""Free text typed at the counter (issue 12): no control characters or ANSI escapes,
no text that is not Unicode, and no payment card number, at the command line as at
the local API (tests/test_api_hostile.py); the card recognition is the drivers' one."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent import fields
from agent.errors import InvalidInput
from drivers.cards import (
    CARD_REMOVED,
    contains_payment_card,
    is_payment_card,
    luhn_digit,
    redact_payment_cards,
)
from tests.conftest import REPO

CLI = (sys.executable, "-m", "tillpoints.cli")
CARD = "9900835840532866"
# Issuer ranges with a length each network issues: Visa, Mastercard, Amex, Discover.
NETWORKS = [("4", 16), ("51", 16), ("2221", 16), ("37", 15), ("6011", 16), ("4", 19)]


@st.composite
def payment_numbers(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(NETWORKS))
    size = length - len(prefix) - 1
    body = prefix + draw(st.text("0123456789", min_size=size, max_size=size))
    return body + luhn_digit(body)


def typed(number: str, separator: str, group: int) -> str:
    return separator.join(number[i : i + group] for i in range(0, len(number), group))


# A 19-digit number whose first 15 digits are a card number too: removed whole.
@example(number="4030313253337870000", separator=" ", group=5, before="", after="")
@given(
    number=payment_numbers(),
    separator=st.sampled_from(["", " ", "-"]),
    group=st.sampled_from([4, 5, 19]),
    before=st.text(alphabet="abc XYZ:#/é", max_size=12),
    after=st.text(alphabet="abc XYZ:#/é", max_size=12),
)
def test_a_card_number_in_any_typed_form_is_found_and_removed(
    number: str, separator: str, group: int, before: str, after: str
) -> None:
    assert is_payment_card(number)
    text = f"{before}{typed(number, separator, group)}{after}"
    assert contains_payment_card(text)
    cleaned = redact_payment_cards(text)
    assert CARD_REMOVED in cleaned
    assert number[-4:] not in cleaned.replace(" ", "").replace("-", "")
    with pytest.raises(InvalidInput) as caught:
        fields.reason(text)
    assert caught.value.code == "payment_card"
    assert not any(char.isdigit() for char in caught.value.message)


@pytest.mark.parametrize(
    "text",
    [
        "Ann Lee",
        CARD,  # a programme card is not a payment card
        "R-2026-000123",
        "POS1-000123",
        "+86 138 0013 8000",
        "12345678901234567890123",  # an unbroken run longer than any card number
        "4111111111111112",  # bad check digit
        "1234 5678 9012 3456",  # no network's range
    ],
)
def test_ordinary_text_is_not_taken_for_a_card(text: str) -> None:
    assert not contains_payment_card(text)
    assert redact_payment_cards(text) == text


@pytest.mark.parametrize(
    ("parser", "text", "code"),
    [
        (fields.name, "Ann\x1b[31m", "invalid_name"),
        (fields.name, "Ann\u202eeeL", "invalid_name"),
        (fields.district, "North\x07", "invalid_district"),
        (fields.reason, "lost\x1b]0;title\x07", "invalid_reason"),
        (fields.reason, "lost\ud800", "invalid_reason"),
        (fields.reason, "  ", "invalid_reason"),
        (fields.reason, "x" * 201, "invalid_reason"),
        (fields.receipt, "R\x1b1", "invalid_receipt"),
        (fields.receipt, "4111-1111-1111-1111", "payment_card"),
        (fields.staff, "4111111111111111", "payment_card"),
        (fields.name, "Ann 5555 5555 5555 4444", "payment_card"),
        (fields.district, "3782 822463 10005", "payment_card"),
    ],
)
def test_free_text_parsers_refuse_by_name(
    parser: Callable[[str], object], text: str, code: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parser(text)
    assert caught.value.code == code
    assert "4111" not in caught.value.message and "5555" not in caught.value.message


def run(tmp_path: Path, *argv: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, "--state", str(tmp_path / "till"), "--config", str(tmp_path / "none.toml"), *argv],
        capture_output=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def journal(tmp_path: Path) -> int:
    conn = sqlite3.connect(tmp_path / "till" / "ledger.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def till(tmp_path: Path) -> Path:
    assert run(tmp_path, "init", "--store", "S001", "--till", "T01").returncode == 0
    enrolled = run(tmp_path, "enroll", "--name", "Ann", "--phone", "5551234567", "--card", CARD)
    assert enrolled.returncode == 0, enrolled.stderr
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (
            ("adjust", "--member", CARD, "--points", "5", "--staff", "s1", "--reason", "a\x1b[2J"),
            "invalid_reason",
        ),
        (
            ("adjust", "--member", CARD, "--points", "5", "--staff", "s1", "--reason", b"bad \xff"),
            "invalid_text",
        ),
        (("enroll", "--name", "Bo\x1b[31m", "--phone", "5550001111"), "invalid_name"),
        (
            ("enroll", "--name", "Bo", "--phone", "5550001111", "--district", "N\x9b2J"),
            "invalid_district",
        ),
        (
            (
                "adjust",
                "--member",
                CARD,
                "--points",
                "5",
                "--staff",
                "s1",
                "--reason",
                "card 4111 1111 1111 1111",
            ),
            "payment_card",
        ),
        (("enroll", "--name", "Bo 4111-1111-1111-1111", "--phone", "5550001111"), "payment_card"),
        (
            ("earn", "--member", CARD, "--receipt", "4111111111111111", "--amount", "1.00"),
            "payment_card",
        ),
        (
            ("earn", "--member", CARD, "--receipt", "R1", "--amount", "4111 1111 1111 1111"),
            "invalid_amount",
        ),
        (
            ("earn", "--member", CARD, "--receipt", "R1", "--line", "4111111111111111:1:1.00"),
            "payment_card",
        ),
        (
            ("staff", "add", "--id", "4111-1111-1111-1111", "--role", "cashier", "--pin-stdin"),
            "payment_card",
        ),
        (
            ("redeem", "--member", CARD, "--receipt", "R1", "--points", "4111 1111 1111 1111"),
            "invalid_points",
        ),
    ],
)
def test_the_command_line_refuses_escapes_and_card_numbers(
    till: Path, argv: tuple[str | bytes, ...], code: str
) -> None:
    before = journal(till)
    done = run(till, *argv, "--json")
    assert done.returncode == 2, done.stderr
    answer = json.loads(done.stdout)
    assert answer["error"] == code
    assert b"Traceback" not in done.stderr
    assert b"4111" not in done.stdout + done.stderr and b"\x1b" not in done.stdout + done.stderr
    assert journal(till) == before
    data = b"".join(path.read_bytes() for path in (till / "till").iterdir() if path.is_file())
    assert b"4111111111111111" not in data and b"4111 1111" not in data
