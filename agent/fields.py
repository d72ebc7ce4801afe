"""Validation of everything a cashier or a POS types in, before any write.

Each parser returns a clean value or raises ``InvalidInput`` whose message starts
with the field's name. Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from agent.errors import InvalidInput
from agent.money import parse_amount

MAX_NAME = 80
MAX_LINES = 200
MAX_POINTS = 100_000_000

_RECEIPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}", re.ASCII)
_STAFF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", re.ASCII)
_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}", re.ASCII)
_INTEGER = re.compile(r"0|[1-9][0-9]{0,12}", re.ASCII)


@dataclass(frozen=True)
class Line:
    """One receipt line: category, quantity, amount in minor units."""

    category: str
    qty: int
    amount: int

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "qty": self.qty, "amount": self.amount}


def name(value: str) -> str:
    """Names are stored verbatim, in any script; only control characters and
    empty or oversized names are refused."""
    text = value.strip()
    if not text:
        raise InvalidInput("invalid_name", "name: must not be empty")
    if len(text) > MAX_NAME:
        raise InvalidInput("invalid_name", f"name: longer than {MAX_NAME} characters")
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise InvalidInput("invalid_name", "name: contains control characters")
    return text


def phone(value: str) -> str:
    """A phone number normalised to digits with an optional leading '+' (E.164: at
    most 15 digits). Spaces, dashes, dots and brackets are separators."""
    text = re.sub(r"[ \-.()]", "", value.strip())
    if not re.fullmatch(r"\+?[0-9]{6,15}", text, re.ASCII):
        raise InvalidInput(
            "invalid_phone", f"phone: {value[:30]!r} is not a phone number (6 to 15 digits)"
        )
    return text


# scrypt's cost as log2 of its N (r = 8, p = 1): 2**14 needs 16 MiB and tens of
# milliseconds per key (docs/sync.md, "Phone numbers"). HQ sets its chain's cost;
# a simulated chain sets it low. What a till accepts from HQ is bounded.
PHONE_COST, MIN_PHONE_COST, MAX_PHONE_COST = 14, 1, 16
# A simulated chain (``hq simulate``) and the benchmark's set-up: made-up numbers,
# nobody's phone at stake; scrypt N = 16 is well under a millisecond per key.
SIMULATED_PHONE_COST = 4


@dataclass(frozen=True)
class PhonePepper:
    """The chain's (or, before registration, the till's own) secret salt for phone
    keys and scrypt's cost; kept in the state directory's 0600 secrets file."""

    pepper: bytes
    cost: int = PHONE_COST


def phone_key(normalised: str, pepper: PhonePepper) -> str:
    """What the till stores and looks up a phone number by: scrypt of its digits,
    salted with the chain's pepper. Deliberately slow (and memory-hard), because
    anyone holding the pepper can try every mobile number: at the default cost that
    is years of CPU for a whole numbering plan, instead of seconds for a plain
    keyed hash."""
    digits = normalised.lstrip("+").encode("ascii")
    kdf = Scrypt(salt=pepper.pepper, length=32, n=1 << pepper.cost, r=8, p=1)
    return kdf.derive(digits).hex()


def birthday(value: str, today: dt.date) -> str:
    try:
        day = dt.date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidInput("invalid_birthday", f"birthday: {value[:20]!r} is not a date YYYY-MM-DD")
    if day > today:
        raise InvalidInput("invalid_birthday", f"birthday: {value} is in the future")
    if day.year < today.year - 120:
        raise InvalidInput("invalid_birthday", f"birthday: {value} is more than 120 years ago")
    return day.isoformat()


def gender(value: str) -> str:
    if value not in ("F", "M", "X"):
        raise InvalidInput("invalid_gender", f"gender: must be F, M or X, not {value[:10]!r}")
    return value


def district(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 60 or any(unicodedata.category(c).startswith("C") for c in text):
        raise InvalidInput("invalid_district", "district: 1 to 60 printable characters")
    return text


def household(value: str | int) -> int:
    number = _whole(value, "household", "invalid_household")
    if not 1 <= number <= 30:
        raise InvalidInput("invalid_household", "household: must be 1 to 30 people")
    return number


def receipt(value: str) -> str:
    if not isinstance(value, str) or not _RECEIPT.fullmatch(value):
        raise InvalidInput(
            "invalid_receipt",
            "receipt: 1 to 64 characters of letters, digits and . _ : / -",
        )
    return value


def staff(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _STAFF.fullmatch(value):
        raise InvalidInput("invalid_staff", "staff: 1 to 32 letters, digits, '.', '_' or '-'")
    return value


def points(value: str | int, field: str = "points") -> int:
    """A positive whole number of points (no signs, fractions or exponents)."""
    number = _whole(value, field, "invalid_points")
    if number <= 0:
        raise InvalidInput("invalid_points", f"{field}: must be more than zero")
    if number > MAX_POINTS:
        raise InvalidInput("invalid_points", f"{field}: more than {MAX_POINTS} points")
    return number


def signed_points(value: str | int, field: str = "points") -> int:
    """A non-zero whole number of points that may be negative (adjustments)."""
    if isinstance(value, str) and value.startswith("-"):
        return -points(value[1:], field)
    return points(value, field)


def _whole(value: str | int, field: str, code: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(code, f"{field}: must be a whole number")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not _INTEGER.fullmatch(value):
        raise InvalidInput(code, f"{field}: {str(value)[:20]!r} is not a whole number")
    return int(value)


def category(value: str, field: str = "line") -> str:
    text = value.strip().lower()
    if not _CATEGORY.fullmatch(text):
        raise InvalidInput(
            "invalid_line", f"{field}: category {value[:40]!r} must be 1-32 of a-z 0-9 _ -"
        )
    return text


def line_text(value: str, index: int) -> Line:
    """Parse ``CATEGORY:QTY:AMOUNT`` (the command line's form of a receipt line)."""
    field = f"line {index + 1}"
    parts = value.split(":")
    if len(parts) != 3:
        raise InvalidInput("invalid_line", f"{field}: {value[:60]!r} is not CATEGORY:QTY:AMOUNT")
    return line_parts(parts[0], parts[1], parts[2], field)


def line_parts(cat: object, qty: object, amount: object, field: str) -> Line:
    if not isinstance(cat, str):
        raise InvalidInput("invalid_line", f"{field}: category must be text")
    if not isinstance(qty, (str, int)):
        raise InvalidInput("invalid_line", f"{field}: qty must be a whole number")
    number = _whole(qty, f"{field}: qty", "invalid_line")
    if not 1 <= number <= 100_000:
        raise InvalidInput("invalid_line", f"{field}: qty must be 1 to 100000")
    try:
        minor = parse_amount(amount, f"{field}: amount")
    except InvalidInput as error:
        raise InvalidInput("invalid_line", error.message) from None
    return Line(category(cat, field), number, minor)


def lines(values: list[str]) -> tuple[Line, ...]:
    if not values:
        raise InvalidInput("invalid_line", "line: at least one line is needed")
    if len(values) > MAX_LINES:
        raise InvalidInput("invalid_line", f"line: more than {MAX_LINES} lines")
    return tuple(line_text(value, index) for index, value in enumerate(values))
