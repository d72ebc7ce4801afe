"""Points rules: parsed once from TOML into frozen values, then applied purely.

Multipliers are exact ``Fraction``s parsed from decimal strings; money is minor
units. A typo in a rules file is refused with the key's path, never defaulted.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from agent.errors import InvalidInput
from agent.money import parse_amount

_DECIMAL = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?", re.ASCII)


@dataclass(frozen=True)
class Tier:
    name: str
    min_spend: int
    multiplier: Fraction


@dataclass(frozen=True)
class Promotion:
    name: str
    start: dt.date
    end: dt.date
    weekdays: frozenset[int]
    multiplier: Fraction

    def applies(self, day: dt.date) -> bool:
        in_range = self.start <= day <= self.end
        return in_range and (not self.weekdays or day.isoweekday() in self.weekdays)


@dataclass(frozen=True)
class Rules:
    earn_points_per_unit: int
    earn_unit: int
    rounding: str
    category_multipliers: dict[str, Fraction]
    tiers: tuple[Tier, ...]
    promotions: tuple[Promotion, ...]
    birthday_multiplier: Fraction
    enrol_bonus: int
    redeem_points_per_unit: int
    redeem_unit: int
    redeem_minimum: int
    max_receipt_share: Fraction
    offline_cap: int
    offline_after_hours: int
    expiry_months: int
    lock_days: int
    refund_supervisor_above: int
    # The rate (``_terms``) for each (category, tier multiplier, day, birthday) seen:
    # the product of Fractions is the slow part of pricing a line, and a till sees
    # few distinct keys a day. Not part of the rules' value.
    _rates: dict[tuple[str, int, int, dt.date, bool], tuple[int, int, int]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # The tiers by threshold, highest first (ties in their order): ``tier_for`` takes
    # the first one reached. Not part of the rules' value.
    _by_spend: tuple[Tier, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_spend = tuple(sorted(self.tiers, key=lambda tier: tier.min_spend, reverse=True))
        object.__setattr__(self, "_by_spend", by_spend)

    # -- pure rule applications ------------------------------------------------

    def tier_for(self, spend_12m: int) -> Tier:
        # A refund of an old receipt can leave the window's spend below zero. The
        # first of the highest thresholds reached, as ``max`` picks among those
        # reached (tests/test_rules.py checks it against that).
        spend_12m = max(0, spend_12m)
        for tier in self._by_spend:
            if spend_12m >= tier.min_spend:
                return tier
        raise ValueError("no tier starts at 0")

    def line_points(
        self, category: str, amount: int, tier: Tier, day: dt.date, birthday_month: bool
    ) -> int:
        """Points one receipt line earns (rounded per line, as the rules say): the
        exact product, truncated toward zero after adding a half for half_up."""
        multiplier = tier.multiplier
        key = (category, multiplier.numerator, multiplier.denominator, day, birthday_month)
        terms = self._rates.get(key)
        if terms is None:
            terms = self._terms(category, tier, day, birthday_month)
            if len(self._rates) >= 4096:
                self._rates.clear()
            self._rates[key] = terms
        times, plus, denominator = terms
        numerator = amount * times + plus
        if numerator >= 0:
            return numerator // denominator
        return -(-numerator // denominator)

    def _terms(
        self, category: str, tier: Tier, day: dt.date, birthday_month: bool
    ) -> tuple[int, int, int]:
        """The line's rate as (times, plus, denominator): its points are ``amount *
        times + plus`` over ``denominator``, truncated toward zero (half_up adds its
        half in ``plus``)."""
        multiplier = self.category_multipliers.get(category, Fraction(1)) * tier.multiplier
        for promotion in self.promotions:
            if promotion.applies(day):
                multiplier *= promotion.multiplier
        if birthday_month:
            multiplier *= self.birthday_multiplier
        rate = Fraction(self.earn_points_per_unit, self.earn_unit) * multiplier
        if self.rounding == "half_up":
            return 2 * rate.numerator, rate.denominator, 2 * rate.denominator
        return rate.numerator, 0, rate.denominator

    def redemption_value(self, points: int) -> int:
        """Money (minor units) that ``points`` are worth, rounded down."""
        return points * self.redeem_unit // self.redeem_points_per_unit

    def expires_on(self, earned: dt.date) -> dt.date:
        return add_months(earned, self.expiry_months)

    def spendable_on(self, earned: dt.date) -> dt.date:
        return earned + dt.timedelta(days=self.lock_days)


def add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


# -- loading ---------------------------------------------------------------------


class _Table:
    """A TOML table read key by key; leftovers are unknown keys and refused."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise InvalidInput("invalid_rules", f"{where}: must be a table")
        self.value, self.where, self.used = value, where, set[str]()

    def get(self, key: str) -> Any:
        if key not in self.value:
            raise InvalidInput("invalid_rules", f"{self.where}.{key}: missing")
        self.used.add(key)
        return self.value[key]

    def table(self, key: str) -> _Table:
        return _Table(self.get(key), f"{self.where}.{key}")

    def whole(self, key: str, low: int = 0, high: int = 10**9) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(
                "invalid_rules", f"{self.where}.{key}: must be a whole number {low}..{high}"
            )
        return value

    def money(self, key: str, allow_zero: bool = True) -> int:
        try:
            return parse_amount(self.get(key), f"{self.where}.{key}", allow_zero=allow_zero)
        except InvalidInput as error:
            raise InvalidInput("invalid_rules", error.message) from None

    def fraction(self, key: str) -> Fraction:
        return _fraction(self.get(key), f"{self.where}.{key}")

    def date(self, key: str) -> dt.date:
        value = self.get(key)
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise InvalidInput(
                "invalid_rules", f"{self.where}.{key}: must be a date YYYY-MM-DD"
            ) from None

    def done(self) -> None:
        unknown = sorted(set(self.value) - self.used)
        if unknown:
            raise InvalidInput("invalid_rules", f"{self.where}.{unknown[0]}: unknown key")


def _fraction(value: Any, where: str) -> Fraction:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise InvalidInput("invalid_rules", f'{where}: must be a decimal string like "1.5"')
    return Fraction(value)


def parse_rules(document: dict[str, Any]) -> Rules:
    root = _Table(document, "rules")
    earn, categories = root.table("earn"), root.table("categories")
    rounding = earn.get("rounding")
    if rounding not in ("floor", "half_up"):
        raise InvalidInput("invalid_rules", "rules.earn.rounding: must be 'floor' or 'half_up'")
    multipliers_table = categories.get("multipliers")
    if not isinstance(multipliers_table, dict):
        raise InvalidInput("invalid_rules", "rules.categories.multipliers: must be a table")
    multipliers = {
        str(name).lower(): _fraction(value, f"rules.categories.multipliers.{name}")
        for name, value in multipliers_table.items()
    }
    tiers = tuple(_tier(raw, index) for index, raw in enumerate(root.get("tiers")))
    if not tiers or min(tier.min_spend for tier in tiers) != 0:
        raise InvalidInput("invalid_rules", "rules.tiers: one tier must start at 0.00")
    promotions = tuple(_promotion(raw, index) for index, raw in enumerate(root.get("promotions")))
    birthday, enrol, redeem = root.table("birthday"), root.table("enrol"), root.table("redeem")
    expiry, lock, refund = root.table("expiry"), root.table("lock"), root.table("refund")
    rules = Rules(
        earn_points_per_unit=earn.whole("points_per_unit", 0, 10_000),
        earn_unit=earn.money("unit", allow_zero=False),
        rounding=rounding,
        category_multipliers=multipliers,
        tiers=tiers,
        promotions=promotions,
        birthday_multiplier=birthday.fraction("multiplier"),
        enrol_bonus=enrol.whole("bonus", 0, 1_000_000),
        redeem_points_per_unit=redeem.whole("points_per_unit", 1, 1_000_000),
        redeem_unit=redeem.money("unit", allow_zero=False),
        redeem_minimum=redeem.whole("minimum", 1, 10**9),
        max_receipt_share=redeem.fraction("max_receipt_share"),
        offline_cap=redeem.whole("offline_cap", 0, 10**9),
        offline_after_hours=redeem.whole("offline_after_hours", 0, 24 * 365),
        expiry_months=expiry.whole("months", 1, 1200),
        lock_days=lock.whole("days", 0, 365),
        refund_supervisor_above=refund.money("supervisor_above"),
    )
    if rules.max_receipt_share > 1:
        raise InvalidInput("invalid_rules", "rules.redeem.max_receipt_share: at most 1")
    for table in (root, earn, categories, birthday, enrol, redeem, expiry, lock, refund):
        table.done()
    return rules


def _tier(raw: Any, index: int) -> Tier:
    table = _Table(raw, f"rules.tiers[{index}]")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("invalid_rules", f"rules.tiers[{index}].name: must be a name")
    tier = Tier(name, table.money("min_spend"), table.fraction("multiplier"))
    table.done()
    return tier


def _promotion(raw: Any, index: int) -> Promotion:
    table = _Table(raw, f"rules.promotions[{index}]")
    weekdays = table.get("weekdays")
    if not isinstance(weekdays, list) or not all(
        isinstance(day, int) and 1 <= day <= 7 for day in weekdays
    ):
        raise InvalidInput(
            "invalid_rules", f"rules.promotions[{index}].weekdays: must list days 1..7"
        )
    promotion = Promotion(
        name=str(table.get("name")),
        start=table.date("start"),
        end=table.date("end"),
        weekdays=frozenset(weekdays),
        multiplier=table.fraction("multiplier"),
    )
    table.done()
    return promotion


def default_rules_text() -> str:
    return resources.files("agent").joinpath("default_rules.toml").read_text("utf-8")


def load_rules_text(text: str, where: str = "rules") -> Rules:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput("invalid_rules", f"{where}: not valid TOML ({error})") from None
    return parse_rules(document)


def load_rules_file(path: Path) -> str:
    """Read and validate a rules file; returns its text (stored verbatim in the state)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput("invalid_rules", f"--rules: cannot read {path}: {error}") from None
    load_rules_text(text, str(path))
    return text
