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
import sys
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any

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
from agent.results import Earned, Enrolled, Redeemed, Refunded
from agent.rules import Rules
from sync.hq.insight.population import Member


def _ordinal(day: str) -> int:
    """An ISO day as a number (``spend_since`` compares and stores days so)."""
    return dt.date.fromisoformat(day).toordinal()


def fingerprint(account: str, content: object) -> str:
    """As ``agent.ledger`` keys a receipt's idempotency check."""
    return hashlib.sha256(
        canonical({"account": account, "content": content}, checked=True)
    ).hexdigest()


@dataclass(slots=True)
class Account:
    """An account's lots and debt in memory; the decisions are ``agent.lots``'s (``policy``)."""

    lots: dict[int, policy.Lot] = field(default_factory=dict)  # by lot id (the earning's seq)
    debt: int = 0
    # The twelve-month spend rows, flat: day (ordinal), amount, refunded, by day. One
    # array, not a list per row: a year of a large chain's earns is millions of rows
    # (issue 18's RSS; ``tests/test_insight_simulate.py`` checks them against lists).
    sales: array[int] = field(default_factory=lambda: array("q"))
    # Amounts of the unrefunded rows pruned from ``sales`` (older than twelve months):
    # a refund marks the first row of its amount, and those came first.
    pruned: Counter[int] | None = None  # (None until a row is pruned: 100,000s of accounts)

    def expire(self, day: str) -> int:
        gone = policy.expiring(self.lots.values(), day)
        for lot in gone:
            del self.lots[lot.lot_id]
        return sum(lot.left for lot in gone)

    def add_lot(self, seq: int, points: int, lot: Lot) -> int:
        if points <= 0:
            return 0
        payoff = policy.payoff(points, self.debt)
        self.debt -= payoff
        # Interned: a year of lots shares a few hundred date strings (issue 18's RSS).
        spendable, expires = sys.intern(lot.spendable_on), sys.intern(lot.expires_on)
        self.lots[seq] = policy.Lot(seq, points - payoff, spendable, expires)
        return points

    def add_sale(self, day: str, amount: int) -> None:
        self.sales.extend((_ordinal(day), amount, 0))

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
        for lot_id, step in steps:
            lot = self.lots[lot_id]
            self.lots[lot_id] = replace(lot, left=lot.left + sign * step)

    def consume(self, points: int, day: str) -> list[policy.Move]:
        """A redemption: spendable lots, oldest expiry first."""
        steps = policy.consume(self.lots.values(), points, day, spendable_only=True)
        self.shift(steps, -1)
        return [policy.Move(i, n, self.lots[i].expires_on, False) for i, n in steps]

    def moves_as_of(self, moves: list[policy.Move], day: str) -> list[policy.Move]:
        """A redemption's moves with ``expired`` as of ``day`` (a lot gone has run out)."""
        return [
            replace(m, expired=m.lot_id not in self.lots or self.lots[m.lot_id].expires_on <= day)
            for m in moves
        ]

    def balance(self, day: str) -> int:
        return sum(lot.left for lot in self.lots.values() if lot.expires_on > day) - self.debt


@dataclass
class Sale:
    account: str
    member_id: str | None
    seq: int
    amount: int
    lines: tuple[SaleLine, ...]
    refunded: bool = False
    redeemed: int = 0
    redeem_moves: list[policy.Move] = field(default_factory=list)
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
        return self.accounts.setdefault(name, Account())

    def ref(self, member: Member) -> tuple[str, str | None, str | None, str | None]:
        """(account, member_id, card, birthday) as ``Ledger.resolve`` finds them: by
        member id where this till enrolled the member, else by the card."""
        known = self.members.get(member.index)
        if known is not None:
            return known[0], known[0], None, known[1]
        return "C" + member.card, None, member.card, None

    def observe(self, entry: Entry, body: Body | None = None) -> None:
        """Learn from ``entry``; ``body`` is its typed body where the writer has it
        (the model: what it signed, so reading it back would give the same)."""
        self.seq, self.head = entry.seq, entry.hash
        if body is None:
            kind = kind_of(entry.kind)
            if kind is None:
                return
            body = read_body(kind, entry.body, entry.seq)
        if isinstance(body, Enrol):
            member = body.member
            index = self.by_card.get(body.card, -1)
            self.enrolled += 1
            if index >= 0:
                self.members[index] = (member.member_id, member.birthday)
            if body.lot is not None:
                account = self.account(member.member_id)
                account.add_lot(entry.seq, body.bonus, body.lot)
        elif isinstance(body, Earn):
            account = self.account(body.account)
            account.expire(body.day)
            account.add_lot(entry.seq, body.points, body.lot)
            account.add_sale(body.day, body.amount)
            self.sales[body.receipt] = Sale(
                body.account, body.member_id, entry.seq, body.amount, body.lines, day=body.day
            )
            self.sold.append((body.day, body.receipt))
        elif isinstance(body, Redeem):
            account = self.account(body.account)
            account.expire(body.day)
            sale = self.sales.get(body.receipt)
            moves = account.consume(body.points, body.day)
            if sale is not None:
                sale.redeemed, sale.redeem_moves = body.points, moves
                sale.remote = body.points - sum(m.points for m in moves)
                self.drawn.update(m.lot_id for m in moves)
        elif isinstance(body, Refund):
            self._observe_refund(body)

    def _observe_refund(self, body: Refund) -> None:
        account = self.account(body.account)
        account.expire(body.day)
        sale = self.sales[body.receipt]
        sale.refunded = True
        account.mark_refunded(sale.amount, body.amount)
        day = body.day
        plan = policy.take_back(account.lots.get(sale.seq), account.lots.values(), body.taken, day)
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
        lots = self.account(sale.account).lots
        for move in sale.redeem_moves:
            self.drawn[move.lot_id] -= 1
            if self.drawn[move.lot_id] <= 0:
                del self.drawn[move.lot_id]
                lot = lots.get(move.lot_id)
                if lot is not None and lot.left == 0:
                    del lots[move.lot_id]

    def spend_12m(self, account: str, day: dt.date) -> int:
        return self.account(account).spend_since((day - dt.timedelta(days=365)).isoformat())


class ModelTill:
    """Writes a till's entries as ``agent.ledger.Ledger`` would, without its database."""

    def __init__(
        self, state: TillState, key: Ed25519PrivateKey, rules: Rules, pepper: PhonePepper
    ) -> None:
        # pepper: the till's current phone pepper (agent.till_secrets), as the ledger's.
        self.state, self.key, self.rules, self.pepper = state, key, rules, pepper
        self.written: list[Entry] = []
        self.typed: list[Body] = []  # the typed body of each entry of ``written``

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
        self.written.append(entry)
        self.typed.append(body)
        return entry

    def _lot(self, day: dt.date) -> Lot:
        return Lot(
            spendable_on=self.rules.spendable_on(day).isoformat(),
            expires_on=self.rules.expires_on(day).isoformat(),
        )

    def enrol(self, member: Member, when: dt.datetime) -> None:
        state, day = self.state, when.date()
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
            day=day.isoformat(),
            bonus=bonus,
            lot=Lot(spendable_on=day.isoformat(), expires_on=self._lot(day).expires_on)
            if bonus
            else None,
            effects={"delta": bonus if bonus > 0 else 0, "expired": 0},
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
        state, day = self.state, when.date()
        account, member_id, card, birthday = state.ref(member)
        tier = self.rules.tier_for(state.spend_12m(account, day))
        birthday_month = bool(birthday) and int(str(birthday)[5:7]) == day.month
        content: list[dict[str, Any]] = [
            {"category": c, "qty": q, "amount": a} for c, q, a in lines
        ]
        priced = tuple(
            SaleLine(
                category=c,
                qty=q,
                amount=a,
                points=self.rules.line_points(c, a, tier, day, birthday_month),
            )
            for c, q, a in lines
        )
        points = sum(line.points for line in priced)
        delta = points if points > 0 else 0
        balance = state.account(account).balance(day.isoformat()) + delta
        # What the member can take at the next visit (never synced: the offline cap).
        can_take = max(0, min(balance, self.rules.offline_cap))
        can_take = can_take if can_take >= self.rules.redeem_minimum else 0
        result = Earned(
            member_id=member_id,
            receipt=receipt,
            points=points,
            balance=balance,
            tier=tier.name,
            redeemable=can_take,
            redeemable_value=self.rules.redemption_value(can_take),
            replayed=False,
        )
        body = Earn(
            account=account,
            member_id=member_id,
            card=card,
            receipt=receipt,
            fingerprint=fingerprint(account, content),
            lines=priced,
            amount=sum(a for _, _, a in lines),
            points=points,
            tier=tier.name,
            day=day.isoformat(),
            lot=self._lot(day),
            effects={"delta": delta, "expired": self._expired(account, day)},
            result=result.as_json(),
        )
        self._append(when, body)

    def _expired(self, account: str, day: dt.date) -> int:
        gone = policy.expiring(self.state.account(account).lots.values(), day.isoformat())
        return sum(lot.left for lot in gone)

    def available(self, member: Member, day: dt.date) -> int:
        account = self.state.account(self.state.ref(member)[0])
        return max(0, min(account.balance(day.isoformat()), self.rules.offline_cap))

    def redeem(
        self, member: Member, receipt: str, points: int, amount: int, when: dt.datetime
    ) -> None:
        state, day = self.state, when.date()
        account, member_id, _, _ = state.ref(member)
        value = self.rules.redemption_value(points)
        after = state.account(account).balance(day.isoformat()) - points
        body = Redeem(
            account=account,
            member_id=member_id,
            receipt=receipt,
            fingerprint=fingerprint(account, {"points": points, "amount": amount}),
            points=points,
            value=value,
            amount=amount,
            day=day.isoformat(),
            effects={"delta": -points, "expired": self._expired(account, day)},
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
        state, day = self.state, when.date()
        sale = state.sales[receipt]
        planned = tuple(
            RefundLine(line_no=n, qty=line.qty, amount=line.amount, points=line.points)
            for n, line in enumerate(sale.lines)
        )
        taken, returned = sum(p.points for p in planned), sale.redeemed
        expired = self._expired(sale.account, day)
        # Points given back to a lot that has run out since count as expired.
        moves = state.account(sale.account).moves_as_of(sale.redeem_moves, day.isoformat())
        expired += policy.restore(sale.remote, moves, returned).expired
        # Taking points lowers (lots - debt) by exactly what is taken; returned
        # points go back to the lots they came from.
        balance = state.account(sale.account).balance(day.isoformat()) - taken + returned
        body = Refund(
            account=sale.account,
            member_id=sale.member_id,
            receipt=receipt,
            lines=planned,
            amount=sale.amount,
            taken=taken,
            returned=returned,
            day=day.isoformat(),
            effects={"delta": returned - taken, "expired": expired},
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
