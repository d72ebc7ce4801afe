"""What the ledger's operations answer: one frozen dataclass per operation.

Inside the agent an answer is typed, with money in integer minor units like every
other figure; ``as_json()`` turns it into what the cashier, the POS and the
acceptance tests read (docs/contract.md) only at the edges: the command line
(``tillpoints.cli_*``), the local API (``agent.api``) and the daemon's events
(``agent.daemon``). Its JSON is its fields in declaration order, money (fields
marked ``MONEY``) as decimal strings (``"12.30"``), nested answers as objects,
tuples as lists: the keys and order the answers have always had.

An earn's and a redemption's answer is also kept, as JSON, in its journal entry
and its receipt row, so that a replay of the same receipt answers the same
(``agent.ledger``); ``from_json`` reads it back. Keep that JSON as it is: it is
signed inside the journal, and HQ holds copies.

All answers live in this one module, so a new operation's answer (and a merge
bringing one) has one obvious place to go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from agent.errors import LedgerError
from agent.money import format_amount

# Field metadata: an amount of money, integer minor units inside, a decimal string out.
MONEY = {"money": True}

Shape = tuple[tuple[str, bool], ...]
_SHAPES: dict[type[Answer], Shape] = {}


def _shape(cls: type[Answer]) -> Shape:
    """Each field's name and whether it is money, worked out once per class (an
    earn's answer is built on the hot path)."""
    shape = _SHAPES.get(cls)
    if shape is None:
        fields = dataclasses.fields(cls)
        shape = _SHAPES[cls] = tuple(
            (item.name, bool(item.metadata.get("money"))) for item in fields
        )
    return shape


def _edge(value: Any) -> Any:
    if isinstance(value, Answer):
        return value.as_json()
    if isinstance(value, tuple):
        return [_edge(item) for item in value]
    return value


_WRITERS: dict[type[Answer], Callable[[Any], dict[str, Any]]] = {}


def _generate_writer(cls: type[Answer]) -> Callable[[Any], dict[str, Any]]:
    """``Answer._loop_as_json`` for ``cls`` as one function: money formatted, an int,
    a text, a bool or None copied as it is, anything else through ``_edge`` (the
    simulated till writes an answer into every entry)."""
    names: dict[str, Any] = {"money": format_amount, "edge": _edge, "plain": _PLAIN}
    lines = ["def write(answer):", "    shown = {}"]
    for name, money in _shape(cls):
        lines.append(f"    value = answer.{name}")
        convert = "money(value)" if money else "value if type(value) in plain else edge(value)"
        lines.append(f"    shown[{name!r}] = {convert}")
    lines.append("    return shown")
    exec("\n".join(lines), names)  # noqa: S102 -- code made here from field names
    write: Callable[[Any], dict[str, Any]] = names["write"]
    return write


_PLAIN = (int, str, bool, type(None))


def minor_units(text: str) -> int:
    """The inverse of ``agent.money.format_amount`` (``"-12.30"`` is ``-1230``): an
    answer kept for a replay holds money as it was formatted. Not for input: what a
    cashier types goes through ``agent.money.parse_amount``."""
    sign = -1 if text.startswith("-") else 1
    whole, _, fraction = text.removeprefix("-").partition(".")
    return sign * (int(whole) * 100 + int(fraction or 0))


@dataclass(frozen=True)
class Answer:
    """The base of every answer: its JSON at the edges, and back."""

    def as_json(self) -> dict[str, Any]:
        write = _WRITERS.get(type(self))
        if write is None:
            write = _WRITERS[type(self)] = _generate_writer(type(self))
        return write(self)

    def _loop_as_json(self) -> dict[str, Any]:
        """``as_json`` field by field: the reference ``_generate_writer`` unrolls."""
        return {
            name: format_amount(getattr(self, name)) if money else _edge(getattr(self, name))
            for name, money in _shape(type(self))
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """An answer of flat fields (no nested answers) from its ``as_json()``."""
        try:
            return cls(
                **{
                    name: minor_units(data[name]) if money else data[name]
                    for name, money in _shape(cls)
                }
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise LedgerError(
                "malformed_result",
                f"a kept {cls.__name__} answer cannot be read back ({type(error).__name__}: "
                f"{error}); run `tillpoints log verify`",
            ) from None


# -- set-up ------------------------------------------------------------------------


@dataclass(frozen=True)
class TillIdentity(Answer):
    """``init``: the till just created (``agent.ledger.Ledger.identity``)."""

    store: str
    till: str
    device_id: str
    public_key: str
    state: str


# -- members and cards ---------------------------------------------------------------


@dataclass(frozen=True)
class Enrolled(Answer):
    member_id: str
    card: str
    card_kind: str  # "physical" or "ecard"
    balance: int  # the enrolment bonus, if the rules give one


@dataclass(frozen=True)
class CardReplaced(Answer):
    member_id: str
    card: str
    blocked: str  # the card replaced, blocked from now on


@dataclass(frozen=True)
class ConsentRecorded(Answer):
    """``consent``: the member's marketing consent as now recorded."""

    member_id: str
    marketing: bool


@dataclass(frozen=True)
class Found(Answer):
    """``lookup``: a member by phone, here or (asked online) at HQ."""

    member_id: str | None
    name: str | None
    card: str | None


# -- points --------------------------------------------------------------------------


@dataclass(frozen=True)
class Earned(Answer):
    member_id: str | None  # None: a programme card not enrolled here
    receipt: str
    points: int
    balance: int
    tier: str
    # What the member can take at the next visit, for the POS to print.
    redeemable: int
    redeemable_value: int = field(metadata=MONEY)
    replayed: bool  # the receipt was recorded before: nothing written this time


@dataclass(frozen=True)
class Redeemed(Answer):
    member_id: str | None
    receipt: str
    points: int
    value: int = field(metadata=MONEY)
    balance: int
    replayed: bool


@dataclass(frozen=True)
class Refunded(Answer):
    member_id: str | None
    receipt: str
    points: int  # the signed change: returned - taken
    taken: int
    returned: int
    refunded: int = field(metadata=MONEY)
    balance: int
    negative: bool  # points already spent were taken back: redemption is blocked


@dataclass(frozen=True)
class Adjusted(Answer):
    member_id: str | None
    points: int
    balance: int


@dataclass(frozen=True)
class OfferTaken(Answer):
    member_id: str | None
    offer_id: str
    receipt: str
    kind: str  # "voucher", "gift" or "multiplier"
    title: str
    points: int  # a multiplier's bonus; 0 for a voucher or a gift
    value: int = field(metadata=MONEY)  # a voucher's value; 0 otherwise
    balance: int


# -- a member's standing ---------------------------------------------------------------


@dataclass(frozen=True)
class Standing(Answer):
    """``balance``: where a member (or a card not enrolled here) stands."""

    member_id: str | None
    card: str | None
    balance: int
    tier: str
    value: int = field(metadata=MONEY)  # what the balance is worth redeemed
    available: int  # spendable now (locked lots, debts and the offline cap left out)
    expiring_30d: int
    # HQ's suggestions for the member today, the two that matter most (empty: none).
    suggestions: tuple[SuggestionShown, ...]


@dataclass(frozen=True)
class OfferShown(Answer):
    """An HQ offer as the counter shows it: HQ's own text (``value`` is a voucher's
    amount or a multiplier as HQ wrote it, not minor units)."""

    offer_id: str
    title: str
    kind: str
    value: str
    valid_to: str


class _OfferIfAny(Answer):
    """An answer whose ``offer`` is left out of the JSON when there is none."""

    def as_json(self) -> dict[str, Any]:
        shown = super().as_json()
        if shown.get("offer") is None:
            shown.pop("offer", None)
        return shown


@dataclass(frozen=True)
class SuggestionShown(_OfferIfAny):
    """One of HQ's suggestions as the counter shows it (``agent.suggestions``): why
    in plain words, and the offer accepting puts into the sale, where one applies
    (left out of the JSON when there is none)."""

    id: str
    reason: str
    text: str
    valid_to: str
    offer: OfferShown | None = None


@dataclass(frozen=True)
class SuggestionRecorded(Answer):
    """``suggestion record``: what the member answered to one of HQ's suggestions."""

    member_id: str
    suggestion: str
    reason: str
    outcome: str
    replayed: bool  # the same answer was recorded before: nothing written this time


@dataclass(frozen=True)
class ListedSuggestion(_OfferIfAny):
    """One line of a store's list for its in-store advisors (``suggestion list``):
    whom to call and why, with no phone number (the advisor finds the member by
    name or card)."""

    id: str
    member_id: str
    name: str | None
    reason: str
    text: str
    last_visit: str | None  # ISO date, or None when HQ cannot say
    valid_to: str
    offer: OfferShown | None = None


@dataclass(frozen=True)
class StoreSuggestions(Answer):
    """``suggestion list``: today's suggestions for a store's members."""

    store: str
    day: str
    suggestions: tuple[ListedSuggestion, ...]


@dataclass(frozen=True)
class MemberView(Standing):
    """What the counter shows on a scan (``GET /v1/members/{ref}``, ``event: scan``):
    the standing, then the name, the birthday month and today's offers."""

    name: str | None
    birthday_month: bool
    offers: tuple[OfferShown, ...]

    @classmethod
    def of(
        cls,
        standing: Standing,
        name: str | None,
        birthday_month: bool,
        offers: tuple[OfferShown, ...],
    ) -> MemberView:
        parts = {item.name: getattr(standing, item.name) for item in dataclasses.fields(Standing)}
        return cls(**parts, name=name, birthday_month=birthday_month, offers=offers)


# -- the journal -----------------------------------------------------------------------


@dataclass(frozen=True)
class Exported(Answer):
    """``log export``: how many entries were written, the last one's hash, where."""

    entries: int
    head: str
    out: str
