"""Money at the edges: decimal strings in, integer minor units inside, strings out.

Only plain ASCII digits with at most two fraction digits are money. Everything a
float parser would happily accept (``1e3``, ``NaN``, ``inf``, ``１２``, ``1,000``,
``+5``, `` 5``) is refused here, so no float ever reaches the ledger.
"""

from __future__ import annotations

import re

from agent.errors import InvalidInput
from drivers.cards import shown

# The largest amount one line or receipt may carry: 10 million in major units.
MAX_MINOR = 10_000_000_00

_MONEY = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?", re.ASCII)


def parse_amount(text: object, field: str = "amount", *, allow_zero: bool = False) -> int:
    """Parse ``"12.30"`` into ``1230``. Raises ``InvalidInput`` naming ``field``."""
    if not isinstance(text, str):
        raise InvalidInput(
            "invalid_amount", f"{field}: must be a decimal string like '12.30', not {text!r}"
        )
    match = _MONEY.fullmatch(text)
    if match is None:
        raise InvalidInput(
            "invalid_amount",
            f"{field}: {shown(text, 40)} is not an amount (digits, optional '.' and at most "
            "two fraction digits)",
        )
    whole, frac = match.group(1), match.group(2) or ""
    minor = int(whole) * 100 + int(frac.ljust(2, "0"))
    if minor > MAX_MINOR:
        raise InvalidInput(
            "invalid_amount", f"{field}: {text} is larger than {format_amount(MAX_MINOR)}"
        )
    if minor == 0 and not allow_zero:
        raise InvalidInput("invalid_amount", f"{field}: must be more than zero")
    return minor


def format_amount(minor: int) -> str:
    """Format ``1230`` as ``"12.30"`` (negative amounts keep their sign)."""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 100)
    return f"{sign}{whole}.{frac:02d}"
