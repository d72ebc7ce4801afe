"""Checks for what the cashier types, run as they type.

The rules are the agent's own (``agent.fields``, ``agent.money``: pure functions,
no I/O), so the form can never accept what the agent would refuse, nor refuse what
it would accept. The agent checks again on every request: this is for the cashier's
benefit, not a gate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from textual.validation import ValidationResult, Validator

from agent import fields
from agent.errors import LedgerError
from agent.money import parse_amount


def _message(error: LedgerError) -> str:
    # The agent's messages start with the field's name ("phone: ..."); the form shows
    # the field already.
    head, sep, rest = error.message.partition(": ")
    return rest if sep and " " not in head else error.message


class Rule(Validator):
    """A Textual validator around one of the agent's field parsers."""

    def __init__(self, check: Callable[[str], Any], *, optional: bool = False) -> None:
        super().__init__()
        self.check, self.optional = check, optional

    def validate(self, value: str) -> ValidationResult:
        if self.optional and not value.strip():
            return self.success()
        try:
            self.check(value)
        except LedgerError as error:
            return self.failure(_message(error))
        return self.success()


def phone(value: str) -> str:
    return fields.phone(value)


def birthday(value: str, today: dt.date | None = None) -> str:
    return fields.birthday(value.strip(), today or dt.date.today())


def name(value: str) -> str:
    return fields.name(value)


def receipt(value: str) -> str:
    return fields.receipt(value.strip())


def staff(value: str) -> str:
    checked = fields.staff(value.strip())
    assert checked is not None
    return checked


def pin(value: str) -> str:
    if not (value.isascii() and value.isdigit() and 4 <= len(value) <= 12):
        raise LedgerError("invalid_pin", "pin: 4 to 12 digits")
    return value


def amount(value: str) -> str:
    parse_amount(value.strip())
    return value.strip()


def points(value: str, maximum: int | None = None) -> int:
    number = fields.points(value.strip())
    if maximum is not None and number > maximum:
        raise LedgerError("invalid_points", f"points: at most {maximum} available")
    return number


def card(value: str) -> str:
    text = value.strip().replace(" ", "")
    if not (text.isascii() and text.isdigit() and 8 <= len(text) <= 19):
        raise LedgerError("invalid_card", "card: the card's digits (swipe it to fill this in)")
    return text


def lines(value: str) -> list[dict[str, Any]]:
    """Receipt lines as the command line takes them (``CATEGORY:QTY:AMOUNT``),
    separated by commas or spaces: ``fresh:2:4.50, grocery:1:7.80``."""
    items = [item for item in value.replace(",", " ").split() if item]
    if not items:
        raise LedgerError("invalid_line", "lines: give CATEGORY:QTY:AMOUNT, ...")
    parsed = []
    for index, item in enumerate(items, 1):
        parts = item.split(":")
        if len(parts) != 3:
            raise LedgerError("invalid_line", f"lines: line {index} is not CATEGORY:QTY:AMOUNT")
        line = fields.line_parts(parts[0], parts[1], parts[2], f"line {index}")
        parsed.append({"category": line.category, "qty": line.qty, "amount": parts[2]})
    return parsed
