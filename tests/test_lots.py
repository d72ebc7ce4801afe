"""One lot policy, two appliers (agent.lots): the ledger's SQL projection and the
simulated till's in-memory model (sync.hq.insight.till_model) agree, lot by lot,
on random sequences of earnings, redemptions, refunds and time passing (expiry),
with a lock window so that spendable and fresh points differ."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent import lots
from agent.errors import LedgerError
from agent.fields import Line
from agent.ledger import Ledger
from agent.rules import default_rules_text
from sync.hq.insight.till_model import TillState
from tests.conftest import TZ, Clock

CARDS = ["9900835840532866", "9900568732746027"]
LOCKED_RULES = default_rules_text().replace("[lock]\ndays = 0", "[lock]\ndays = 3")

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
        points = max(1, int(self.ledger.balance(card)["available"] * share))
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

    @rule(days=st.integers(min_value=1, max_value=400))
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
                assert model.balance(day) == self.ledger.balance(card)["balance"]


LedgerAndModel.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
test_ledger_and_model_agree = LedgerAndModel.TestCase


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
