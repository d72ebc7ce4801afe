"""What a card number is: one of ours, a bank's, or somebody else's.

Pure functions. Program cards are defined by configuration (prefixes, length, Luhn);
payment cards by the networks' published issuer ranges (ISO/IEC 7812 IINs) plus the
Luhn check. A payment number is recognised so that it can be *dropped*: callers get
the classification, never the digits back in an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class CardClass(Enum):
    MEMBER = "member"
    INVALID_CODE = "invalid_code"
    PAYMENT_CARD = "payment_card"
    FOREIGN_CARD = "foreign_card"


@dataclass(frozen=True)
class CardPolicy:
    """Which numbers are this programme's cards (the defaults of docs/contract.md).

    ``length`` is the length of the cards this till issues (e-cards) and one that it
    accepts; ``other_lengths`` are further lengths accepted (older card runs). ``luhn``
    False accepts any last digit (student ids, many gift-card runs have no check digit).
    """

    prefixes: tuple[str, ...] = ("9900",)
    length: int = 16
    luhn: bool = True
    other_lengths: tuple[int, ...] = ()

    def length_ok(self, digits: str) -> bool:
        return len(digits) == self.length or len(digits) in self.other_lengths


DEFAULT_POLICY = CardPolicy()


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B check digit (the Luhn formula)."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body + digit`` pass the Luhn check."""
    for candidate in "0123456789":
        if luhn_ok(body + candidate):
            return candidate
    raise ValueError("unreachable: one of ten digits always completes a Luhn number")


# (low, high) inclusive prefix ranges compared on the first len(low) digits, with the
# lengths each network issues. Sources (docs/readers.md, "Payment cards"): the IIN
# table of Wikipedia's "Payment card number" article and braintree/credit-card-type
# (src/lib/card-types.ts), both as of 2026; ISO/IEC 7812's register is not public.
_PAYMENT_RANGES: tuple[tuple[str, str, range], ...] = (
    ("4", "4", range(13, 20)),  # Visa, Visa Electron, Cartes Bancaires co-badged
    ("51", "55", range(16, 17)),  # Mastercard
    ("2221", "2720", range(16, 17)),  # Mastercard 2-series
    ("2200", "2204", range(16, 20)),  # Mir
    ("2205", "2205", range(16, 17)),  # Borica
    ("34", "34", range(15, 16)),  # American Express
    ("37", "37", range(15, 16)),
    ("300", "305", range(14, 20)),  # Diners Club International
    ("3095", "3095", range(14, 20)),
    ("36", "36", range(14, 20)),
    ("38", "39", range(14, 20)),
    ("3528", "3589", range(16, 20)),  # JCB (LankaPay 357111 inside it)
    ("1800", "1800", range(15, 16)),  # JCB, older 15-digit runs
    ("2131", "2131", range(15, 16)),
    ("1", "1", range(15, 16)),  # UATP
    ("31", "31", range(19, 20)),  # China T-Union
    ("1946", "1946", range(16, 20)),  # GPN (Indonesia)
    ("50", "50", range(12, 20)),  # Maestro; Dankort 5019, Elo, Verve 5060-5079
    ("56", "69", range(12, 20)),  # Maestro 56-69; Discover 6011/644-649/65, UnionPay 62,
    # RuPay 60/65, Bancontact 6703, InterPayment 636, InstaPayment 637-639, Hipercard
    ("6703", "6703", range(16, 20)),  # Bancontact (inside Maestro's 67, named for docs)
    ("81", "82", range(16, 20)),  # UnionPay 81, RuPay 81-82
    ("8600", "8600", range(16, 17)),  # UzCard
    ("9792", "9792", range(16, 17)),  # Troy
    ("9860", "9860", range(16, 17)),  # Humo
)


def is_payment_card(digits: str) -> bool:
    """True for a Luhn-valid number in a payment network's issuer range."""
    if not (12 <= len(digits) <= 19) or not luhn_ok(digits):
        return False
    for low, high, lengths in _PAYMENT_RANGES:
        head = digits[: len(low)]
        if low <= head <= high and len(digits) in lengths:
            return True
    return False


def in_payment_range(digits: str) -> bool:
    """A number of a payment network's length in its issuer range, Luhn or not."""
    for low, high, lengths in _PAYMENT_RANGES:
        if low <= digits[: len(low)] <= high and len(digits) in lengths:
            return True
    return False


def classify(
    digits: str, policy: CardPolicy = DEFAULT_POLICY, financial: bool = False
) -> CardClass:
    """Classify a card number read from a track or a code. ``financial``: the track
    says it is a bank card (track 1 format code ``B``), so a number in a payment
    network's range is treated as a payment card even if its check digit is wrong."""
    if is_payment_card(digits) or (financial and digits.isdigit() and in_payment_range(digits)):
        return CardClass.PAYMENT_CARD
    if any(digits.startswith(prefix) for prefix in policy.prefixes):
        if not policy.length_ok(digits) or not digits.isdigit():
            return CardClass.INVALID_CODE
        if policy.luhn and not luhn_ok(digits):
            return CardClass.INVALID_CODE
        return CardClass.MEMBER
    return CardClass.FOREIGN_CARD


# Digit groups as a person types a card number: "4111 1111 1111 1111", "4111-1111-...".
_DIGIT_GROUPS = re.compile(r"[0-9]+(?:[ -][0-9]+)*", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
CARD_REMOVED = "[card number removed]"


def _payment_spans(text: str) -> list[tuple[int, int]]:
    """Where free text carries a payment card number: 13 to 19 digits, alone or in
    groups separated by single spaces or dashes, in a payment network's range with a
    good Luhn check. Every run of consecutive groups is tried, so both
    ``R-4111111111111111-01`` and ``4111 1111 1111 1111`` are found, each as the
    longest card number its groups spell (a 19-digit number whose first 15 digits
    also pass is removed whole); a longer unbroken run of digits is not a card
    number."""
    spans = []
    for match in _DIGIT_GROUPS.finditer(text):
        groups = list(_DIGITS.finditer(text, match.start(), match.end()))
        first = 0
        while first < len(groups):
            digits, found = "", None
            for last in range(first, len(groups)):
                digits += groups[last].group()
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and is_payment_card(digits):
                    found = last  # keep going: the longest number wins, so no tail is left
            if found is None:
                first += 1
                continue
            spans.append((groups[first].start(), groups[found].end()))
            first = found + 1
    return spans


def contains_payment_card(text: str) -> bool:
    """True if free text (a name, a receipt id, a reason) carries a payment card
    number (see ``_payment_spans``)."""
    return bool(_payment_spans(text))


def redact_payment_cards(text: str) -> str:
    """``text`` with every payment card number in it replaced: for error messages
    that quote what was typed."""
    for start, end in reversed(_payment_spans(text)):
        text = text[:start] + CARD_REMOVED + text[end:]
    return text


def shown(text: str, width: int) -> str:
    """What an error message may quote of typed text: at most ``width`` characters,
    quoted, with any payment card number removed first (so that cutting the text
    short never leaves part of a card number behind)."""
    return repr(redact_payment_cards(text)[:width])
