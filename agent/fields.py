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
from drivers.cards import contains_payment_card, shown

MAX_NAME = 80
MAX_LINES = 200
MAX_POINTS = 100_000_000
MAX_DISTRICT = 60
MAX_REASON = 200

_RECEIPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}", re.ASCII)
_STAFF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", re.ASCII)
# A store or till id, as `init` takes it.
_PLACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", re.ASCII)
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


def free_text(value: object, field: str, code: str, most: int) -> str:
    """Text a person typed (a name, a district, a reason): kept verbatim in any
    script, but refused when empty, oversized, or carrying what a screen, a log or a
    terminal would act on (control and format characters, ANSI escapes, lone
    surrogates), or a payment card number."""
    if not isinstance(value, str):
        raise InvalidInput(code, f"{field}: must be text")
    text = value.strip()
    if not text:
        raise InvalidInput(code, f"{field}: must not be empty")
    if len(text) > most:
        raise InvalidInput(code, f"{field}: longer than {most} characters")
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise InvalidInput(code, f"{field}: contains control characters")
    no_payment_card(text, field)
    return text


def no_payment_card(text: str, field: str) -> None:
    """Refuse text that carries a bank card number; the message never repeats it."""
    if contains_payment_card(text):
        raise InvalidInput(
            "payment_card", f"{field}: looks like a payment card number, which is never stored"
        )


def name(value: str) -> str:
    """Names are stored verbatim, in any script (see ``free_text``)."""
    return free_text(value, "name", "invalid_name", MAX_NAME)


def phone(value: str) -> str:
    """A phone number normalised to digits with an optional leading '+' (E.164: at
    most 15 digits). Spaces, dashes, dots and brackets are separators."""
    text = re.sub(r"[ \-.()]", "", value.strip())
    if not re.fullmatch(r"\+?[0-9]{6,15}", text, re.ASCII):
        raise InvalidInput(
            "invalid_phone", f"phone: {shown(value, 30)} is not a phone number (6 to 15 digits)"
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
        raise InvalidInput(
            "invalid_birthday", f"birthday: {shown(value, 20)} is not a date YYYY-MM-DD"
        )
    if day > today:
        raise InvalidInput("invalid_birthday", f"birthday: {value} is in the future")
    if day.year < today.year - 120:
        raise InvalidInput("invalid_birthday", f"birthday: {value} is more than 120 years ago")
    return day.isoformat()


def gender(value: str) -> str:
    if value not in ("F", "M", "X"):
        raise InvalidInput("invalid_gender", f"gender: must be F, M or X, not {shown(value, 10)}")
    return value


def district(value: str) -> str:
    return free_text(value, "district", "invalid_district", MAX_DISTRICT)


def reason(value: str) -> str:
    """Why a manual adjustment was made: free text, journaled and synced to HQ."""
    return free_text(value, "reason", "invalid_reason", MAX_REASON)


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
    no_payment_card(value, "receipt")
    return value


def place(value: object, field: str) -> str:
    """A store's or a till's id (``field`` is "store" or "till")."""
    if not isinstance(value, str) or not _PLACE.fullmatch(value):
        raise InvalidInput(f"invalid_{field}", f"{field}: 1-32 letters, digits, '_' or '-'")
    return value


def staff(value: str | None, field: str = "staff") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _STAFF.fullmatch(value):
        raise InvalidInput("invalid_staff", f"{field}: 1 to 32 letters, digits, '.', '_' or '-'")
    no_payment_card(value, field)
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
    """A non-zero whole number of points that may be negative (adjustments): a
    string ``"-50"`` or an integer ``-50``."""
    if isinstance(value, str) and value.startswith("-"):
        return -points(value[1:], field)
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return -points(-value, field)
    return points(value, field)


def _whole(value: object, field: str, code: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise InvalidInput(code, f"{field}: must be a whole number")
    if not _INTEGER.fullmatch(value):
        raise InvalidInput(code, f"{field}: {shown(value, 20)} is not a whole number")
    return int(value)


def category(value: str, field: str = "line") -> str:
    text = value.strip().lower()
    if not _CATEGORY.fullmatch(text):
        raise InvalidInput(
            "invalid_line", f"{field}: category {shown(value, 40)} must be 1-32 of a-z 0-9 _ -"
        )
    no_payment_card(text, f"{field}: category")
    return text


def line_text(value: str, index: int) -> Line:
    """Parse ``CATEGORY:QTY:AMOUNT`` (the command line's form of a receipt line)."""
    field = f"line {index + 1}"
    parts = value.split(":")
    if len(parts) != 3:
        raise InvalidInput(
            "invalid_line", f"{field}: {shown(value, 60)} is not CATEGORY:QTY:AMOUNT"
        )
    return line_parts(parts[0], parts[1], parts[2], field)


def line_parts(cat: object, qty: object, amount: object, field: str) -> Line:
    if not isinstance(cat, str):
        raise InvalidInput("invalid_line", f"{field}: category must be text")
    if not isinstance(qty, (str, int)):
        raise InvalidInput("invalid_line", f"{field}: qty must be a whole number")
    if not isinstance(amount, str):
        raise InvalidInput(
            "invalid_line", f"{field}: amount must be a decimal string like '12.30', not a number"
        )
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
