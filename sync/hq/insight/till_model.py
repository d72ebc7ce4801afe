"""A till's journal written without its SQLite ledger, for simulations at scale.

``agent.ledger.Ledger`` is the real path: a durable transaction, projection
tables and a signature per fact, about a millisecond each. A year of a
100-store chain is millions of facts, so ``hq simulate`` runs the ledger for the
first days and then continues each till's chain here: the same rules
(``agent.rules``), the same body fields, the same effects, signed with the
till's own key by ``agent.chain.sign_entry`` and chained after the ledger's head.

``TillState.observe`` is the one place that learns from an entry, whichever
path wrote it, so the hand-over from ledger to model needs no copying. It
models only what the simulator does (enrol with a physical card; earn by
member id or card; redeem on a sale; refund a whole receipt): lots spent
oldest-expiry first, a refund taking back its own lot first and leaving a debt
for points already spent: ``agent.lots`` decides, as for the ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from array import array
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import fields
from agent import lots as policy
from agent.chain import Entry, canonical, sign_entry
from agent.entries import (
    Body,
    Earn,
    Enrol,
    Lot,
    Redeem,
    Refund,
    RefundLine,
    SaleLine,
    kind_of,
    read_body,
)
from agent.entries import Member as EnrolledMember
from agent.fields import PhonePepper
from agent.privacy import disclosed
from agent.results import Earned, Enrolled, Redeemed, Refunded
from agent.rules import Rules
from sync.hq.insight.population import Member


@lru_cache(maxsize=4096)
def _ordinal(day: str) -> int:
    """An ISO day as a number (lots and ``spend_since`` compare and store days so)."""
    return dt.date.fromisoformat(day).toordinal()


@lru_cache(maxsize=4096)
def _iso(ordinal: int) -> str:
    """The ISO day of an ordinal, the inverse of ``_ordinal``."""
    return dt.date.fromordinal(ordinal).isoformat()


def fingerprint(account: str, content: object) -> str:
    """As ``agent.ledger`` keys a receipt's idempotency check."""
    return hashlib.sha256(
        canonical({"account": account, "content": content}, checked=True)
    ).hexdigest()


@lru_cache(maxsize=8192)
def _effects(delta: int, expired: int) -> dict[str, int]:
    """A body's ``effects``, one dict for each pair of numbers: a worker holds a week
    of its tills' typed bodies (``Signed``), and most pairs repeat (issue 18's RSS).
    Shared, so never changed: nothing changes a typed body's fields, and
    ``to_body`` writes a copy of it (``agent.entries``)."""
    return {"delta": delta, "expired": expired}


_text = json.encoder.encode_basestring  # the escaping ``canonical`` applies to a text


def earn_fingerprint(account: str, lines: tuple[tuple[str, int, int], ...]) -> str:
    """``fingerprint(account, [{"category": c, "qty": q, "amount": a}, ...])`` with
    the canonical bytes spliced (sorted keys; ints as ``canonical`` writes them).
    A line not of a text and two ints goes the slow way (tests/test_till_model.py)."""
    parts = []
    for category, qty, amount in lines:
        if not (type(category) is str and type(qty) is int and type(amount) is int):
            content = [{"category": c, "qty": q, "amount": a} for c, q, a in lines]
            return fingerprint(account, content)
        parts.append(f'{{"amount":{amount},"category":{_text(category)},"qty":{qty}}}')
    text = f'{{"account":{_text(account)},"content":[{",".join(parts)}]}}'
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def redeem_fingerprint(account: str, points: int, amount: int) -> str:
    """``fingerprint(account, {"points": points, "amount": amount})``, spliced."""
    if not (type(points) is int and type(amount) is int):
        return fingerprint(account, {"points": points, "amount": amount})
    text = f'{{"account":{_text(account)},"content":{{"amount":{amount},"points":{points}}}}}'
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# An account's open lots, flat: four numbers a lot (issue 18's RSS: a year of a large
# chain's lots is millions, a ``policy.Lot`` and its dict entry were ~170 bytes each).
_ID, _LEFT, _SPENDABLE, _EXPIRES = range(4)
_WIDTH = 4
# The arrays hold C ints (4 bytes a number) until a number does not fit, then 8-byte
# ones (``_extend``): a simulation's seqs, points, amounts and day ordinals all fit.
_NARROW, _WIDE = "i", "q"


def _narrow() -> array[int]:
    return array(_NARROW)


def _extend(rows: array[int], values: tuple[int, ...]) -> array[int]:
    """``rows`` with ``values`` appended: the same array, or a wider copy if one of
    them does not fit its numbers."""
    size = len(rows)
    try:
        rows.extend(values)
    except OverflowError:
        del rows[size:]
        rows = array(_WIDE, rows)
        rows.extend(values)
    return rows


class LotsView(Mapping[int, policy.Lot]):
    """An account's lots as ``policy.Lot``s by lot id (ISO days), read from its rows."""

    def __init__(self, rows: array[int]) -> None:
        self.rows = rows

    def __getitem__(self, lot_id: int) -> policy.Lot:
        rows = self.rows
        try:
            at = rows[_ID::_WIDTH].index(lot_id) * _WIDTH
        except ValueError:
            raise KeyError(lot_id) from None
        return policy.Lot(
            lot_id, rows[at + _LEFT], _iso(rows[at + _SPENDABLE]), _iso(rows[at + _EXPIRES])
        )

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows[_ID::_WIDTH])

    def __len__(self) -> int:
        return len(self.rows) // _WIDTH


@dataclass(slots=True)
class Account:
    """An account's lots and debt in memory; the decisions are ``agent.lots``'s (``policy``)."""

    # The open lots: lot id (the earning's seq), left, spendable_on, expires_on (days
    # as ordinals), lot after lot; ``lots`` reads them as ``policy.Lot``s.
    rows: array[int] = field(default_factory=_narrow)
    debt: int = 0
    # The twelve-month spend rows, flat: day (ordinal), amount, refunded, by day. One
    # array, not a list per row: a year of a large chain's earns is millions of rows
    # (issue 18's RSS; ``tests/test_insight_simulate.py`` checks them against lists).
    sales: array[int] = field(default_factory=_narrow)
    # Amounts of the unrefunded rows pruned from ``sales`` (older than twelve months):
    # a refund marks the first row of its amount, and those came first.
    pruned: Counter[int] | None = None  # (None until a row is pruned: 100,000s of accounts)

    @property
    def lots(self) -> LotsView:
        return LotsView(self.rows)

    def _rows(self) -> Iterator[policy.LotRow]:
        """The lots as ``agent.lots`` rows (days as ordinals)."""
        rows = self.rows
        return zip(
            rows[_EXPIRES::_WIDTH],
            rows[_ID::_WIDTH],
            rows[_LEFT::_WIDTH],
            rows[_SPENDABLE::_WIDTH],
            strict=True,
        )

    def _due(self, day: int) -> list[policy.LotRow]:
        """``policy.expiring_rows`` on ``day`` (an ordinal). Most days no lot is due:
        the earliest expiry says so without a row made (as the ledger's index does)."""
        rows = self.rows
        if not rows or min(rows[_EXPIRES::_WIDTH]) > day:
            return []
        return policy.expiring_rows(self._rows(), day)

    def _at(self, lot_id: int) -> int:
        return self.rows[_ID::_WIDTH].index(lot_id) * _WIDTH

    def expiring(self, day: int) -> int:
        """The points that run out on ``day`` (an ordinal)."""
        return sum(lot[2] for lot in self._due(day))

    def expire(self, day: int) -> int:
        gone = self._due(day)
        for lot in gone:
            at = self._at(lot[1])
            del self.rows[at : at + _WIDTH]
        return sum(lot[2] for lot in gone)

    def add_lot(self, seq: int, points: int, lot: Lot) -> int:
        if points <= 0:
            return 0
        payoff = policy.payoff(points, self.debt)
        self.debt -= payoff
        spendable, expires = _ordinal(lot.spendable_on), _ordinal(lot.expires_on)
        self.rows = _extend(self.rows, (seq, points - payoff, spendable, expires))
        return points

    def add_sale(self, day: str, amount: int) -> None:
        self.sales = _extend(self.sales, (_ordinal(day), amount, 0))

    def spend_since(self, since: str) -> int:
        """Net spend of the rows after ``since``; older rows are pruned, as no later
        day's twelve months reach back to them (days only move forward)."""
        rows, first = self.sales, _ordinal(since)
        old = 0
        while old < len(rows) and rows[old] <= first:
            if rows[old + 2] == 0:
                self.pruned = self.pruned or Counter()
                self.pruned[rows[old + 1]] += 1
            old += 3
        if old:
            del rows[:old]
        return sum(rows[1::3]) - sum(rows[2::3])

    def mark_refunded(self, amount: int, refunded: int) -> None:
        """The first unrefunded row of ``amount`` is refunded (pruned rows first)."""
        if self.pruned and self.pruned[amount]:
            self.pruned[amount] -= 1
            return
        rows = self.sales
        for at in range(0, len(rows), 3):
            if rows[at + 1] == amount and rows[at + 2] == 0:
                rows[at + 2] = refunded
                return

    def shift(self, steps: list[policy.Step], sign: int) -> None:
        """Take (``sign`` -1) or give back (+1) points lot by lot."""
        rows = self.rows
        for lot_id, step in steps:
            rows[self._at(lot_id) + _LEFT] += sign * step

    def consume(self, points: int, day: int) -> list[policy.Move]:
        """A redemption on ``day`` (an ordinal): spendable lots, oldest expiry first."""
        steps = policy.consume_rows(self._rows(), points, day, spendable_only=True)
        self.shift(steps, -1)
        rows = self.rows
        return [policy.Move(i, n, _iso(rows[self._at(i) + _EXPIRES]), False) for i, n in steps]

    def take_back(self, own: int, points: int, day: int) -> policy.TakeBack:
        """``policy.take_back_rows`` for a refund of the sale whose lot is ``own``."""
        rows = list(self._rows())
        mine = next((lot for lot in rows if lot[1] == own), None)
        return policy.take_back_rows(mine, rows, points, day)

    def moves_as_of(self, moves: Sequence[policy.Move], day: str) -> list[policy.Move]:
        """A redemption's moves with ``expired`` as of ``day`` (a lot gone has run out;
        a move's ``expires_on`` is its lot's)."""
        ids = self.rows[_ID::_WIDTH]
        return [replace(m, expired=m.lot_id not in ids or m.expires_on <= day) for m in moves]

    def drop_spent(self, lot_id: int) -> None:
        """Drop the lot ``lot_id`` if it is open with nothing left."""
        rows = self.rows
        try:
            at = self._at(lot_id)
        except ValueError:
            return
        if rows[at + _LEFT] == 0:
            del rows[at : at + _WIDTH]

    def balance(self, day: str) -> int:
        return self.balance_on(_ordinal(day))

    def balance_on(self, day: int) -> int:
        """The balance on ``day`` (an ordinal): the lots not run out, less the debt."""
        rows = self.rows
        if not rows or min(rows[_EXPIRES::_WIDTH]) > day:
            return sum(rows[_LEFT::_WIDTH]) - self.debt
        return sum(lot[2] for lot in self._rows() if lot[0] > day) - self.debt


@dataclass(slots=True)
class Sale:
    account: str
    member_id: str | None
    seq: int
    amount: int
    # The sale's lines as a refund takes them back, flat: qty, amount, points, line
    # after line (a ``SaleLine`` is about 350 bytes; a worker holds twelve days of
    # sales, issue 18's RSS).
    lines: tuple[int, ...]
    refunded: bool = False
    redeemed: int = 0
    redeem_moves: Sequence[policy.Move] = ()
    remote: int = 0  # redeemed beyond the lots: drawn on HQ's confirmed balance
    day: str = ""


class TillState:
    """What a till knows, learnt from its own journal entries."""

    def __init__(self, device: str, store: str, till: str, seq: int, head: str) -> None:
        self.device, self.store, self.till = device, store, till
        self.seq, self.head = seq, head
        self.members: dict[int, tuple[str, str | None]] = {}  # index -> (member_id, birthday)
        self.by_card: dict[str, int] = {}
        self.accounts: dict[str, Account] = {}
        self.sales: dict[str, Sale] = {}
        self.sold: deque[tuple[str, str]] = deque()  # (day, receipt) of self.sales, in order
        # Lots a held sale's redemption took from, and how many sales: a lot spent to
        # nothing is dropped once no sale that a refund could give back to holds it.
        self.drawn: Counter[int] = Counter()
        self.enrolled = 0

    def account(self, name: str) -> Account:
        account = self.accounts.get(name)
        if account is None:
            account = self.accounts[name] = Account()
        return account

    def ref(self, member: Member) -> tuple[str, str | None, str | None, str | None]:
        """(account, member_id, card, birthday) as ``Ledger.resolve`` finds them: by
        member id where this till enrolled the member, else by the card."""
        known = self.members.get(member.index)
        if known is not None:
            return known[0], known[0], None, known[1]
        return "C" + member.card, None, member.card, None

    def observe(
        self, entry: Entry, body: Body | None = None, keys: Mapping[str, bytes] | None = None
    ) -> None:
        """Learn from ``entry``; ``body`` is its typed body where the writer has it
        (the model: what it signed, so reading it back would give the same).
        ``keys``: the sealing keys of the members an entry enrols, by member id. The
        ledger seals an enrolment's personal fields (``agent.privacy``), the birthday
        among them, which the model needs for a birthday month's points: a sealed
        enrolment read without its key leaves the member's birthday unknown."""
        self.seq, self.head = entry.seq, entry.hash
        if body is None:
            kind = kind_of(entry.kind)
            if kind is None:
                return
            body = read_body(kind, entry.body, entry.seq)
        if isinstance(body, Enrol):
            member = body.member
            if member.sealed is not None and keys:
                member = disclosed(member, keys.get(member.member_id))
            index = self.by_card.get(body.card, -1)
            self.enrolled += 1
            if index >= 0:
                self.members[index] = (member.member_id, member.birthday)
            if body.lot is not None:
                account = self.account(member.member_id)
                account.add_lot(entry.seq, body.bonus, body.lot)
        elif isinstance(body, Earn):
            account = self.account(body.account)
            account.expire(_ordinal(body.day))
            account.add_lot(entry.seq, body.points, body.lot)
            account.add_sale(body.day, body.amount)
            lines = tuple([n for line in body.lines for n in (line.qty, line.amount, line.points)])
            self.sales[body.receipt] = Sale(
                body.account, body.member_id, entry.seq, body.amount, lines, day=body.day
            )
            self.sold.append((body.day, body.receipt))
        elif isinstance(body, Redeem):
            account = self.account(body.account)
            day = _ordinal(body.day)
            account.expire(day)
            sale = self.sales.get(body.receipt)
            moves = account.consume(body.points, day)
            if sale is not None:
                sale.redeemed, sale.redeem_moves = body.points, moves
                sale.remote = body.points - sum(m.points for m in moves)
                self.drawn.update(m.lot_id for m in moves)
        elif isinstance(body, Refund):
            self._observe_refund(body)

    def _observe_refund(self, body: Refund) -> None:
        account = self.account(body.account)
        account.expire(_ordinal(body.day))
        sale = self.sales[body.receipt]
        sale.refunded = True
        account.mark_refunded(sale.amount, body.amount)
        day = body.day
        plan = account.take_back(sale.seq, body.taken, _ordinal(day))
        account.shift([(sale.seq, plan.own)] if plan.own else [], -1)
        account.shift(plan.steps, -1)
        account.debt += plan.debt
        moves = account.moves_as_of(sale.redeem_moves, day)
        back = policy.restore(sale.remote, moves, body.returned)
        account.shift([(m.lot_id, n) for m, n in back.steps if not m.expired], 1)

    def forget_sales(self, before: str) -> None:
        """Drop the sales of days before ``before``: a simulation that can no longer
        refund them (``population.REFUND_DAYS``) need not hold a year of receipts."""
        while self.sold and self.sold[0][0] < before:
            sale = self.sales.pop(self.sold.popleft()[1], None)
            if sale is not None and sale.redeem_moves:
                self._release(sale)

    def _release(self, sale: Sale) -> None:
        """Drop the lots ``sale``'s redemption spent to nothing, unless another held
        sale drew on them too: a lot with nothing left changes no balance, expiry
        or spending (``agent.lots`` passes it by), only a refund's give-back to it."""
        account = self.account(sale.account)
        for move in sale.redeem_moves:
            self.drawn[move.lot_id] -= 1
            if self.drawn[move.lot_id] <= 0:
                del self.drawn[move.lot_id]
                account.drop_spent(move.lot_id)


class Signed(NamedTuple):
    """An entry the model signed, held until its upload: its typed body and what the
    chain adds, without the body's dict (``entry`` writes it again). An ``Entry``
    with its body dict beside the typed body the refresh reads was 3.7 KB, and a
    worker holds a week of its tills' entries: about 140 MiB at the full size
    (issue 18's RSS)."""

    seq: int
    ts: str
    body: Body
    prev: str
    hash: str
    sig: str

    def entry(self, device: str) -> Entry:
        """The entry as ``sign_entry`` gave it: its body's dict written again from the
        typed body, the same bytes signed (tests/test_lots.py verifies the chain)."""
        kind, body = self.body.kind, self.body.to_body()
        return Entry(device, self.seq, self.ts, kind, None, body, self.prev, self.hash, self.sig)


@dataclass(frozen=True, slots=True)
class _Day:
    """What the model writes alike all day: the day as ISO text and as an ordinal,
    an earning's lot, an enrolment bonus's, and where twelve months' spend starts."""

    iso: str
    ordinal: int
    lot: Lot
    enrol_lot: Lot
    since: str


class ModelTill:
    """Writes a till's entries as ``agent.ledger.Ledger`` would, without its database."""

    def __init__(
        self, state: TillState, key: Ed25519PrivateKey, rules: Rules, pepper: PhonePepper
    ) -> None:
        # pepper: the till's current phone pepper (agent.till_secrets), as the ledger's.
        self.state, self.key, self.rules, self.pepper = state, key, rules, pepper
        self.written: list[Signed] = []  # since the last upload
        self._day: _Day | None = None  # of the last entry written (days only move on)

    def _on(self, day: dt.date) -> _Day:
        known = self._day
        if known is not None and known.ordinal == day.toordinal():
            return known
        iso, rules = day.isoformat(), self.rules
        expires = rules.expires_on(day).isoformat()
        known = self._day = _Day(
            iso=iso,
            ordinal=day.toordinal(),
            lot=Lot(spendable_on=rules.spendable_on(day).isoformat(), expires_on=expires),
            enrol_lot=Lot(spendable_on=iso, expires_on=expires),
            since=(day - dt.timedelta(days=365)).isoformat(),
        )
        return known

    def _append(self, when: dt.datetime, body: Body) -> Entry:
        state = self.state
        ts = when.astimezone(dt.UTC).isoformat(timespec="milliseconds")
        entry = sign_entry(
            self.key,
            device=state.device,
            seq=state.seq + 1,
            ts=ts,
            kind=body.kind,
            staff=None,
            body=body.to_body(),
            prev=state.head,
            typed=True,
        )
        state.observe(entry, body)
        self.written.append(Signed(entry.seq, ts, body, entry.prev, entry.hash, entry.sig))
        return entry

    def enrol(self, member: Member, when: dt.datetime) -> None:
        state, day = self.state, self._on(when.date())
        number = fields.phone(member.phone)
        member_id = f"{state.device}-{state.enrolled + 1}"
        state.by_card[member.card] = member.index
        bonus = self.rules.enrol_bonus
        body = Enrol(
            member=EnrolledMember(
                member_id=member_id,
                name=f"Member {member.index}",
                phone_key=fields.phone_key(number, self.pepper),
                birthday=member.birthday.isoformat(),
                gender=member.gender,
                district=member.district,
                household=member.household,
                consent_marketing=1 if member.consent else 0,
                enrolled_at=when.isoformat(timespec="seconds"),
                enrolled_store=state.store,
                enrolled_till=state.till,
                enrolled_by=None,
            ),
            card=member.card,
            card_kind="physical",
            day=day.iso,
            bonus=bonus,
            lot=day.enrol_lot if bonus else None,
            effects=_effects(bonus if bonus > 0 else 0, 0),
            result=Enrolled(
                member_id=member_id, card=member.card, card_kind="physical", balance=bonus
            ).as_json(),
        )
        self._append(when, body)

    def earn(
        self,
        member: Member,
        receipt: str,
        lines: tuple[tuple[str, int, int], ...],
        when: dt.datetime,
    ) -> None:
        state, date = self.state, when.date()
        day, rules = self._on(date), self.rules
        account, member_id, card, birthday = state.ref(member)
        held = state.account(account)
        tier = rules.tier_for(held.spend_since(day.since))
        birthday_month = bool(birthday) and int(str(birthday)[5:7]) == date.month
        line_points, sale_lines = rules.line_points, []
        points = amount = 0
        for c, q, a in lines:
            earned = line_points(c, a, tier, date, birthday_month)
            sale_lines.append(SaleLine(category=c, qty=q, amount=a, points=earned))
            points, amount = points + earned, amount + a
        delta = points if points > 0 else 0
        balance = held.balance_on(day.ordinal) + delta
        # What the member can take at the next visit (never synced: the offline cap).
        can_take = max(0, min(balance, rules.offline_cap))
        can_take = can_take if can_take >= rules.redeem_minimum else 0
        result = Earned(
            member_id=member_id,
            receipt=receipt,
            points=points,
            balance=balance,
            tier=tier.name,
            redeemable=can_take,
            redeemable_value=rules.redemption_value(can_take),
            replayed=False,
        )
        body = Earn(
            account=account,
            member_id=member_id,
            card=card,
            receipt=receipt,
            fingerprint=earn_fingerprint(account, lines),
            lines=tuple(sale_lines),
            amount=amount,
            points=points,
            tier=tier.name,
            day=day.iso,
            lot=day.lot,
            effects=_effects(delta, held.expiring(day.ordinal)),
            result=result.as_json(),
        )
        self._append(when, body)

    def available(self, member: Member, day: dt.date) -> int:
        account = self.state.account(self.state.ref(member)[0])
        return max(0, min(account.balance(day.isoformat()), self.rules.offline_cap))

    def redeem(
        self, member: Member, receipt: str, points: int, amount: int, when: dt.datetime
    ) -> None:
        state, day = self.state, self._on(when.date())
        account, member_id, _, _ = state.ref(member)
        held = state.account(account)
        value = self.rules.redemption_value(points)
        after = held.balance_on(day.ordinal) - points
        body = Redeem(
            account=account,
            member_id=member_id,
            receipt=receipt,
            fingerprint=redeem_fingerprint(account, points, amount),
            points=points,
            value=value,
            amount=amount,
            day=day.iso,
            effects=_effects(-points, held.expiring(day.ordinal)),
            result=Redeemed(
                member_id=member_id,
                receipt=receipt,
                points=points,
                value=value,
                balance=after,
                replayed=False,
            ).as_json(),
        )
        self._append(when, body)

    def refund(self, receipt: str, when: dt.datetime) -> None:
        state, day = self.state, self._on(when.date())
        sale = state.sales[receipt]
        lines = sale.lines
        planned = tuple(
            RefundLine(line_no=n, qty=lines[at], amount=lines[at + 1], points=lines[at + 2])
            for n, at in enumerate(range(0, len(lines), 3))
        )
        taken, returned = sum(p.points for p in planned), sale.redeemed
        held = state.account(sale.account)
        expired = held.expiring(day.ordinal)
        # Points given back to a lot that has run out since count as expired.
        moves = held.moves_as_of(sale.redeem_moves, day.iso)
        expired += policy.restore(sale.remote, moves, returned).expired
        # Taking points lowers (lots - debt) by exactly what is taken; returned
        # points go back to the lots they came from.
        balance = held.balance_on(day.ordinal) - taken + returned
        body = Refund(
            account=sale.account,
            member_id=sale.member_id,
            receipt=receipt,
            lines=planned,
            amount=sale.amount,
            taken=taken,
            returned=returned,
            day=day.iso,
            effects=_effects(returned - taken, expired),
            result=Refunded(
                member_id=sale.member_id,
                receipt=receipt,
                points=returned - taken,
                taken=taken,
                returned=returned,
                refunded=sale.amount,
                balance=balance,
                negative=balance < 0,
            ).as_json(),
        )
        self._append(when, body)
