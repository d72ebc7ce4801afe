"""One lot policy, two appliers (agent.lots): the ledger's SQL projection and the
simulated till's in-memory model (sync.hq.insight.till_model) agree, lot by lot,
on random sequences of earnings, redemptions, refunds and time passing (expiry),
with a lock window so that spendable and fresh points differ."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent import lots
from agent.chain import verify_chain
from agent.errors import LedgerError
from agent.fields import SIMULATED_PHONE_COST, Line, PhonePepper
from agent.ledger import Ledger
from agent.projection import apply
from agent.rules import default_rules_text, load_rules_text
from agent.store import Store
from sync.hq.insight.population import Member, program_card
from sync.hq.insight.till_model import ModelTill, TillState
from tests.conftest import TZ, Clock

CARDS = ["9900835840532866", "9900568732746027"]
# A lock window, and points that expire after two months: both show within a few steps.
LOCKED_RULES = (
    default_rules_text()
    .replace("[lock]\ndays = 0", "[lock]\ndays = 3")
    .replace("[expiry]\nmonths = 24", "[expiry]\nmonths = 2")
)

lines_strategy = st.lists(
    st.builds(
        Line,
        st.sampled_from(["grocery", "fresh", "bakery"]),
        st.integers(min_value=1, max_value=3),
        st.integers(min_value=100, max_value=40_000),
    ),
    min_size=1,
    max_size=3,
)


class LedgerAndModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="tp-lots-"))
        self.clock = Clock(dt.datetime(2026, 3, 11, 10, 0, tzinfo=TZ))
        self.ledger = Ledger.init(
            self.directory / "s", "S001", "T01", rules_text=LOCKED_RULES, clock=self.clock
        )
        self.model = TillState(self.ledger.device_id, "S001", "T01", 0, "0" * 64)
        self.sales: dict[str, tuple[str, int]] = {}  # receipt -> (card, amount)
        self.redeemed: set[str] = set()
        self.count = 0
        self._follow()

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _follow(self) -> None:
        """The model observes every new entry, after predicting the expiry it reports."""
        for seq in range(self.model.seq + 1, self.ledger.head()[0] + 1):
            entry = self.ledger.entry_at(seq)
            assert entry is not None
            if entry.kind in {"earn", "redeem"}:
                account = self.model.account(entry.body["account"])
                gone = lots.expiring(account.lots.values(), entry.body["day"])
                assert sum(lot.left for lot in gone) == entry.body["effects"]["expired"]
            self.model.observe(entry)

    @rule(card=st.sampled_from(CARDS), lines=lines_strategy)
    def earn(self, card: str, lines: list[Line]) -> None:
        self.count += 1
        receipt = f"R{self.count}"
        self.ledger.earn(card, receipt, lines=tuple(lines))
        self.sales[receipt] = (card, sum(line.amount for line in lines))
        self._follow()

    @precondition(lambda self: self.sales)
    @rule(data=st.data(), share=st.floats(min_value=0.05, max_value=1.0))
    def redeem(self, data: st.DataObject, share: float) -> None:
        receipt = data.draw(st.sampled_from(sorted(self.sales)))
        card, amount = self.sales[receipt]
        if receipt in self.redeemed:
            return
        points = max(1, int(self.ledger.balance(card).available * share))
        try:
            self.ledger.redeem(card, receipt, points, amount=amount)
        except LedgerError:
            return
        self.redeemed.add(receipt)
        self._follow()

    @precondition(lambda self: self.sales)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        receipt = data.draw(st.sampled_from(sorted(self.sales)))
        self.ledger.refund(receipt)
        del self.sales[receipt]
        self._follow()

    @rule(days=st.integers(min_value=1, max_value=45))
    def time_passes(self, days: int) -> None:
        self.clock.advance(days=days)

    @invariant()
    def lots_debts_and_balances_agree(self) -> None:
        conn = self.ledger.store.conn
        for card in CARDS:
            account = "C" + card
            sql = {
                lot_id: (left, spendable, expires)
                for lot_id, left, spendable, expires in conn.execute(
                    "SELECT lot_id, points - used, spendable_on, expires_on FROM lots "
                    "WHERE account = ? AND expired = 0",
                    (account,),
                )
            }
            model = self.model.account(account)
            assert sql == {
                lot.lot_id: (lot.left, lot.spendable_on, lot.expires_on)
                for lot in model.lots.values()
            }
            debt = conn.execute("SELECT points FROM debts WHERE account = ?", (account,))
            assert model.debt == (debt.fetchone() or (0,))[0]
            if sql or model.debt:
                day = self.clock().date().isoformat()
                assert model.balance(day) == self.ledger.balance(card).balance


LedgerAndModel.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
test_ledger_and_model_agree = LedgerAndModel.TestCase


class ModelWritesLedgerReplays(RuleBasedStateMachine):
    """The other direction, as ``hq simulate`` uses it: entries the model writes
    (with the effects it computed) replay through the ledger's projection to the
    very same effects, which is what ``log verify`` and HQ check."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="tp-model-"))
        self.store = Store(self.directory / "ledger.db", create=True)
        state = TillState("D-model", "S001", "T01", 0, "0" * 64)
        pepper = PhonePepper(b"p" * 32, SIMULATED_PHONE_COST)
        rules = load_rules_text(LOCKED_RULES)
        self.till = ModelTill(state, Ed25519PrivateKey.generate(), rules, pepper)
        self.now = dt.datetime(2026, 3, 11, 10, 0, tzinfo=TZ)
        self.members = [_member(0), _member(1)]
        self.till.enrol(self.members[0], self.now)  # member 1 earns by card only
        self.receipts = 0
        self.redeemed: set[str] = set()

    def teardown(self) -> None:
        self.store.conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(who=st.integers(0, 1), lines=lines_strategy)
    def earn(self, who: int, lines: list[Line]) -> None:
        self.receipts += 1
        basket = tuple((line.category, line.qty, line.amount) for line in lines)
        self.till.earn(self.members[who], f"R{self.receipts}", basket, self.now)

    @precondition(lambda self: self.till.state.sales)
    @rule(data=st.data(), share=st.floats(min_value=0.05, max_value=1.0))
    def redeem(self, data: st.DataObject, share: float) -> None:
        receipt = data.draw(st.sampled_from(sorted(self.till.state.sales)))
        sale = self.till.state.sales[receipt]
        member = self.members[0 if sale.member_id else 1]
        points = int(self.till.available(member, self.now.date()) * share)
        if points <= 0 or receipt in self.redeemed or sale.refunded:
            return
        self.redeemed.add(receipt)
        self.till.redeem(member, receipt, points, sale.amount, self.now)

    @precondition(lambda self: self.till.state.sales)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        receipt = data.draw(st.sampled_from(sorted(self.till.state.sales)))
        if not self.till.state.sales[receipt].refunded:
            self.till.refund(receipt, self.now)

    @rule(days=st.integers(min_value=1, max_value=45))
    def time_passes(self, days: int) -> None:
        self.now += dt.timedelta(days=days)

    @invariant()
    def the_projection_reproduces_the_models_effects(self) -> None:
        entries = [signed.entry(self.till.state.device) for signed in self.till.written]
        for entry in entries:
            effects = apply(self.store.conn, entry.seq, entry.kind, entry.body)
            assert effects == entry.body["effects"], (entry.seq, entry.kind)
        if entries:
            # The entries written again from the held typed bodies are the ones signed.
            key, first = self.till.key.public_key(), entries[0]
            report = verify_chain(entries, key, start_seq=first.seq, start_prev=first.prev)
            assert report.ok, report
        self.till.written.clear()


def _member(index: int) -> Member:
    return Member(
        index=index,
        home="S001",
        age=40,
        birthday=dt.date(1986, 7, 1),
        gender="F",
        household=2,
        district="north-1",
        consent=True,
        phone=f"07{index:09d}",
        card=program_card(index),
        rate=0.1,
        routine="weekly",
        missions=(1.0,),
        enrol_at=0.0,
        lapse_day=None,
    )


ModelWritesLedgerReplays.TestCase.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None
)
test_model_writes_and_ledger_replays_agree = ModelWritesLedgerReplays.TestCase


def test_a_refund_returning_points_to_an_expired_lot_counts_them_expired() -> None:
    """The case random runs rarely reach: a redemption spends an older lot, which
    expires before the sale is refunded; the points given back are expired, in the
    model's effects as in the ledger's."""
    machine = ModelWritesLedgerReplays()
    try:
        member, till = machine.members[0], machine.till
        till.earn(member, "A", (("grocery", 1, 20_000),), machine.now)
        machine.now += dt.timedelta(days=30)
        till.earn(member, "B", (("grocery", 1, 20_000),), machine.now)
        till.redeem(member, "B", 100, 20_000, machine.now)  # from A's lot, B's is locked
        machine.now += dt.timedelta(days=40)  # A's lot has expired, B's has not
        till.refund("B", machine.now)
        refund = till.written[-1].entry(till.state.device)
        assert refund.kind == "refund" and refund.body["effects"]["expired"] >= 100
        machine.the_projection_reproduces_the_models_effects()
    finally:
        machine.teardown()


# -- the policy on its own: what the two appliers cannot reach ---------------------


def _lot(lot_id: int, left: int, expires: str, spendable: str = "2026-01-01") -> lots.Lot:
    return lots.Lot(lot_id, left, spendable, expires)


def test_consume_spends_the_oldest_expiry_first_and_respects_the_lock() -> None:
    open_lots = [
        _lot(3, 50, "2027-01-01"),
        _lot(1, 40, "2027-06-01"),
        _lot(2, 30, "2027-01-01", spendable="2026-05-01"),
    ]
    assert lots.consume(open_lots, 70, "2026-04-01", spendable_only=True) == [(3, 50), (1, 20)]
    assert lots.consume(open_lots, 70, "2026-04-01", spendable_only=False) == [(2, 30), (3, 40)]
    # A lot past its expiry date is not spent, even if not yet closed.
    assert lots.consume(open_lots, 500, "2027-01-01", spendable_only=False) == [(1, 40)]


def test_a_refund_takes_its_own_lot_first_and_leaves_debt_for_what_was_spent() -> None:
    own = _lot(7, 10, "2028-01-01")
    plan = lots.take_back(own, [own, _lot(2, 5, "2027-01-01")], 30, "2026-04-01")
    assert plan == lots.TakeBack(own=10, steps=[(2, 5)], debt=15)
    assert lots.take_back(None, [], 0, "2026-04-01") == lots.TakeBack(0, [], 0)


def test_restore_returns_the_remote_draw_first_then_the_newest_lots() -> None:
    moves = [
        lots.Move(1, 20, "2027-01-01", expired=True),
        lots.Move(2, 20, "2028-01-01", expired=False),
    ]
    plan = lots.restore(5, moves, 35)
    assert plan.remote == 5
    assert plan.steps == [(moves[1], 20), (moves[0], 10)]
    assert plan.expired == 10


def test_an_earning_pays_off_debt_first() -> None:
    assert (lots.payoff(30, 50), lots.payoff(30, 10), lots.payoff(0, 10)) == (30, 10, 0)


# -- the rows entry points (issue 18) against the policy as first written ---------------


def _reference_consume(
    lots_: list[lots.Lot], points: int, day: str, spendable_only: bool
) -> list[lots.Step]:
    if points <= 0:
        return []
    usable = sorted(
        (
            lot
            for lot in lots_
            if lot.left > 0
            and lot.expires_on > day
            and (not spendable_only or lot.spendable_on <= day)
        ),
        key=lambda lot: (lot.expires_on, lot.lot_id),
    )
    steps, wanted = [], points
    for lot in usable:
        step = min(lot.left, wanted)
        steps.append((lot.lot_id, step))
        wanted -= step
        if not wanted:
            break
    return steps


def _reference_take_back(
    own: lots.Lot | None, lots_: list[lots.Lot], points: int, day: str
) -> lots.TakeBack:
    first = min(points, own.left) if own is not None and points > 0 else 0
    others = [lot for lot in lots_ if own is None or lot.lot_id != own.lot_id]
    steps = _reference_consume(others, points - first, day, False)
    return lots.TakeBack(first, steps, points - first - sum(step for _, step in steps))


_DAY0 = dt.date(2025, 1, 1).toordinal()


def _iso(offset: int) -> str:
    return dt.date.fromordinal(_DAY0 + offset).isoformat()


lots_strategy = st.lists(
    st.tuples(st.integers(0, 50), st.integers(0, 40), st.integers(0, 40)),  # left, days
    max_size=12,
).map(
    lambda raw: [
        lots.Lot(lot_id, left, _iso(spendable), _iso(spendable + expires))
        for lot_id, (left, spendable, expires) in enumerate(raw, start=1)
    ]
)


def _ordinal_rows(lots_: list[lots.Lot]) -> list[lots.LotRow]:
    def day(text: str) -> int:
        return dt.date.fromisoformat(text).toordinal()

    return [(day(lot.expires_on), lot.lot_id, lot.left, day(lot.spendable_on)) for lot in lots_]


@settings(max_examples=400, deadline=None)
@given(
    lots_strategy,
    st.integers(-5, 200),
    st.integers(0, 80),
    st.booleans(),
    st.integers(0, 12),
)
def test_the_rows_entry_points_decide_as_the_lot_ones(
    lots_: list[lots.Lot], points: int, offset: int, spendable_only: bool, own_at: int
) -> None:
    """ISO days on ``Lot``s or day ordinals on rows: the same expiry, spending and
    take-back as the policy first written on ``Lot``s."""
    day, ordinal, rows = _iso(offset), _DAY0 + offset, _ordinal_rows(lots_)
    gone = [lot.lot_id for lot in lots_ if lot.expires_on <= day]
    assert [lot.lot_id for lot in lots.expiring(lots_, day)] == gone
    assert [lot[1] for lot in lots.expiring_rows(rows, ordinal)] == gone
    expected = _reference_consume(lots_, points, day, spendable_only)
    assert lots.consume(lots_, points, day, spendable_only=spendable_only) == expected
    assert lots.consume_rows(rows, points, ordinal, spendable_only=spendable_only) == expected
    own = lots_[own_at] if own_at < len(lots_) else None
    plan = _reference_take_back(own, lots_, points, day)
    assert lots.take_back(own, lots_, points, day) == plan
    own_row = rows[own_at] if own is not None else None
    assert lots.take_back_rows(own_row, rows, points, ordinal) == plan
