"""Plausibility of uploaded entries: points a till's key signed but no till could
have recorded.

HQ verifies that a device signed its entries; it cannot know that the device was
honest. Whoever holds one till's ``device.key`` can sign an ``adjust`` of 10^12
points, or an earn of a million points on a 1.00 sale, and the chain verifies.
Ingest therefore compares each new entry's balance change with what the rules
could give and raises an ``implausible_entry`` alert (device, seq, kind, points,
reason) for one that is out of bounds:

- ``earn``: more points than the sale's amount earns at the most generous rate
  the rules allow (the best category, tier, every promotion at once and the
  birthday month), plus one per line for ``half_up`` rounding; or a negative
  amount;
- ``adjust``: a manual adjustment larger, either way, than ``adjust_points``;
- any other kind: more than ``entry_points`` added in one entry;
- any kind: a negative expiry (which would add points).

An implausible entry is *stored and alerted*, not refused: it is signed and
chained, so refusing it would also refuse every later entry of the till, honest
sales included, and the till would retry it forever; the points are already
spendable at that till, which HQ cannot undo by refusing. Stored, it keeps
exactly-once and the chain intact, shows in the member's balance and in ``hq
alerts``, and the operator decides (freeze the device, correct with an
adjustment). Integers beyond 64 bits are refused earlier, at the HTTP layer
(``sync.wire``), since no column can hold them.

Limits live at HQ, in ``hq_meta`` (one database configures every worker), and
``limits`` falls back to the defaults below for any key not set there:

- ``limit_adjust_points`` (100000): largest plausible manual adjustment, points;
- ``limit_entry_points`` (1000000): most points any other single entry may add;
- ``limit_earn_points_per_unit`` (derived from the rules HQ holds, else the
  shipped rules: 12 points per 1.00 by default): most points per 1.00 of sale.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from agent.entries import Kind
from agent.rules import Rules, default_rules_text, load_rules_text
from drivers.errors import TillpointsError
from sync.errors import invalid
from sync.hq.db import Tx

ALERT = "implausible_entry"
DEFAULT_ADJUST_POINTS = 100_000
DEFAULT_ENTRY_POINTS = 1_000_000
# Money per "1.00" in minor units: the earn rate is configured per 1.00 of sale.
_UNIT = 100
KEYS = ("limit_adjust_points", "limit_entry_points", "limit_earn_points_per_unit")
_WHOLE = re.compile(r"[0-9]{1,15}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?", re.ASCII)


@dataclass(frozen=True)
class Limits:
    adjust_points: int
    entry_points: int
    earn_per_unit: Fraction  # points per 1.00 (100 minor units) of sale, at most

    def to_json(self) -> dict[str, Any]:
        return {
            "limit_adjust_points": self.adjust_points,
            "limit_entry_points": self.entry_points,
            "limit_earn_points_per_unit": _decimal(self.earn_per_unit),
        }


@dataclass(frozen=True)
class Finding:
    seq: int
    kind: str
    points: int
    reason: str

    def detail(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry_kind": self.kind,
            "points": self.points,
            "reason": self.reason,
        }


def max_earn_per_unit(rules: Rules) -> Fraction:
    """The most points 1.00 of sale can earn under ``rules``: every multiplier at
    its largest at once (a promotion only counts if it multiplies)."""
    multiplier = max([Fraction(1), *rules.category_multipliers.values()])
    multiplier *= max(tier.multiplier for tier in rules.tiers)
    for promotion in rules.promotions:
        multiplier *= max(Fraction(1), promotion.multiplier)
    multiplier *= max(Fraction(1), rules.birthday_multiplier)
    return Fraction(rules.earn_points_per_unit * _UNIT, rules.earn_unit) * multiplier


# The rules this package ships: read from its file once, not at every upload's
# plausibility check (a quarter of a millisecond a batch).
_default_rules = functools.cache(default_rules_text)


@functools.lru_cache(maxsize=8)
def _rules_rate(text: str) -> Fraction:
    try:
        return max_earn_per_unit(load_rules_text(text))
    except TillpointsError:
        return max_earn_per_unit(load_rules_text(_default_rules()))


def limits(tx: Tx) -> Limits:
    """The limits in force: ``hq_meta`` where set, else the defaults."""
    wanted = (*KEYS, "rules")
    marks = ", ".join("?" for _ in wanted)
    found = {
        str(key): str(value)
        for key, value in tx.all(
            f"SELECT key, value FROM hq_meta WHERE key IN ({marks})",  # noqa: S608 (placeholders)
            wanted,
        )
    }
    rate = _stored(found, "limit_earn_points_per_unit")
    return Limits(
        adjust_points=int(_stored(found, "limit_adjust_points") or DEFAULT_ADJUST_POINTS),
        entry_points=int(_stored(found, "limit_entry_points") or DEFAULT_ENTRY_POINTS),
        earn_per_unit=(
            Fraction(rate)
            if rate is not None
            else _rules_rate(found.get("rules") or _default_rules())
        ),
    )


def _stored(found: dict[str, str], key: str) -> str | None:
    """A limit as stored, if it parses (a row edited by hand to nonsense counts as
    unset rather than failing every upload)."""
    text = found.get(key)
    if text is None:
        return None
    try:
        return _parse_limit(key, text)
    except TillpointsError:
        return None


def set_limits(tx: Tx, values: dict[str, str]) -> None:
    """Store limits given as text (``hq limits --set``), each checked first."""
    for key, text in values.items():
        if key not in KEYS:
            raise invalid("invalid_limit", f"{key}: one of {', '.join(KEYS)}")
        parsed = _parse_limit(key, text)
        tx.run(
            "INSERT INTO hq_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, parsed),
        )


def _parse_limit(key: str, text: str) -> str:
    if key == "limit_earn_points_per_unit":
        if not _DECIMAL.fullmatch(text) or Fraction(text) <= 0:
            raise invalid("invalid_limit", f"{key}: a decimal number of points above 0")
        return text
    if not _WHOLE.fullmatch(text) or int(text) == 0:
        raise invalid("invalid_limit", f"{key}: a whole number of points above 0")
    return str(int(text))


def _decimal(value: Fraction) -> str:
    """Exact decimal text where there is one (rates set as decimals), else n/d."""
    scaled = value * 10**6
    if scaled.denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    whole, rest = divmod(scaled.numerator, 10**6)
    return str(whole) if not rest else f"{whole}.{rest:06d}".rstrip("0")


def findings(
    rows: Iterable[tuple[Any, ...]], lines: Iterable[int], bounds: Limits
) -> Iterator[Finding]:
    """Implausible entries among ``rows`` (``sync.hq.ingest.entry_row`` tuples);
    ``lines`` is each entry's number of receipt lines."""
    # An earn within its bounds (almost every row) is passed over inline: what
    # ``_reason`` finds in it, without the call (tests/test_hq_plausible_fast.py).
    rate, per = bounds.earn_per_unit.numerator, bounds.earn_per_unit.denominator * _UNIT
    for row, count in zip(rows, lines, strict=True):
        kind, delta, expired, amount = row[3], row[10], row[11], row[12]
        if (
            kind == Kind.EARN
            and expired >= 0
            and amount >= 0
            and delta <= amount * rate // per + (count if count > 1 else 1)
        ):
            continue
        seq, kind = int(row[1]), str(kind)
        reason = _reason(kind, delta, expired, amount, count, bounds)
        if reason is not None:
            yield Finding(seq, kind, delta - expired, reason)


def _reason(
    kind: str, delta: int, expired: int, amount: int, lines: int, limits: Limits
) -> str | None:
    if expired < 0:
        return f"a negative expiry ({expired}) adds points"
    if kind == Kind.EARN:
        if amount < 0:
            return f"an earn on a negative amount ({amount})"
        allowed = amount * limits.earn_per_unit.numerator // (
            limits.earn_per_unit.denominator * _UNIT
        ) + max(1, lines)
        if delta > allowed:
            return (
                f"earn of {delta} points on {amount} minor units: more than {allowed}, the most "
                f"{_decimal(limits.earn_per_unit)} points per 1.00 can give"
            )
        return None
    if kind == Kind.ADJUST:
        if abs(delta) > limits.adjust_points:
            return f"adjustment of {delta} points: over the limit of {limits.adjust_points}"
        return None
    if delta > limits.entry_points:
        return f"{kind} adds {delta} points: over the limit of {limits.entry_points}"
    return None
