"""Random sequences of operations keep the ledger's invariants (docs/architecture.md):
every balance equals the sum of its journal effects, only a refund can make one
negative, the rebuilt projection equals the live one, and the chain verifies."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.audit import verify_ledger
from agent.errors import LedgerError
from agent.fields import Line
from agent.ledger import Ledger
from agent.projection import rebuild
from agent.store import PROJECTION_TABLES
from tests.conftest import TZ, Clock

CARDS = ["9900835840532866", "9900568732746027", "9900390788616925"]
CATEGORIES = ["grocery", "fresh", "tobacco", "bakery"]

line_strategy = st.builds(
    Line,
    st.sampled_from(CATEGORIES),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=1, max_value=50_000),
)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="tp-prop-"))
        self.clock = Clock(dt.datetime(2026, 3, 11, 10, 0, tzinfo=TZ))
        self.ledger = Ledger.init(self.directory / "s", "S001", "T01", clock=self.clock)
        self.receipts: list[str] = []
        self.redemptions: list[str] = []
        self.count = 0

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _next(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def _balance(self, card: str) -> int:
        try:
            return int(self.ledger.balance(card).balance)
        except LedgerError:
            return 0

    @rule(card=st.sampled_from(CARDS), name=st.text(min_size=1, max_size=12))
    def enrol(self, card: str, name: str) -> None:
        try:
            self.ledger.enrol(name=name, phone=f"555{CARDS.index(card):07d}", card=card)
        except LedgerError as error:
            assert error.code in {"card_in_use", "duplicate_phone", "invalid_name"}

    @rule(card=st.sampled_from(CARDS), lines=st.lists(line_strategy, min_size=1, max_size=4))
    def earn(self, card: str, lines: list[Line]) -> None:
        before = self._balance(card)
        receipt = self._next("R")
        result = self.ledger.earn(card, receipt, lines=tuple(lines))
        self.receipts.append(receipt)
        assert result.balance >= before

    @rule(card=st.sampled_from(CARDS), points=st.integers(min_value=1, max_value=3000))
    def redeem(self, card: str, points: int) -> None:
        before = self._balance(card)
        receipt = self._next("P")
        try:
            result = self.ledger.redeem(card, receipt, points)
        except LedgerError as error:
            assert error.code in {"insufficient_points", "below_minimum", "negative_balance"}
            assert self._balance(card) == before
            return
        self.redemptions.append(receipt)
        assert result.balance == before - points >= 0

    @precondition(lambda self: self.receipts or self.redemptions)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        receipt = data.draw(st.sampled_from(self.receipts + self.redemptions))
        try:
            self.ledger.refund(receipt)
        except LedgerError as error:
            assert error.code == "already_refunded"

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), line=line_strategy)
    def partial_refund(self, data: st.DataObject, line: Line) -> None:
        receipt = data.draw(st.sampled_from(self.receipts))
        try:
            self.ledger.refund(receipt, (line,))
        except LedgerError as error:
            assert error.code == "refund_exceeds_sale"

    @rule(days=st.integers(min_value=1, max_value=400))
    def time_passes(self, days: int) -> None:
        self.clock.advance(days=days)

    @invariant()
    def balances_are_the_sum_of_journal_effects(self) -> None:
        sums: dict[str, int] = {}
        owner: dict[str, str] = {}
        for entry in self.ledger.entries():
            body = entry.body
            if entry.kind == "enrol":
                owner["C" + body["card"]] = body["member"]["member_id"]
                account = body["member"]["member_id"]
                sums[account] = sums.get(account, 0) + sums.pop("C" + body["card"], 0)
            else:
                account = body.get("account") or body.get("member_id")
            if account is None:
                continue
            account = owner.get(account, account)
            effects = body["effects"]
            sums[account] = sums.get(account, 0) + effects["delta"] - effects["expired"]
        conn = self.ledger.store.conn
        for account, total in sums.items():
            lots = conn.execute(
                "SELECT COALESCE(SUM(points - used), 0) FROM lots "
                "WHERE account = ? AND expired = 0",
                (account,),
            ).fetchone()[0]
            debt = conn.execute(
                "SELECT COALESCE(SUM(points), 0) FROM debts WHERE account = ?", (account,)
            ).fetchone()[0]
            assert lots - debt == total, account

    @invariant()
    def rebuild_equals_live(self) -> None:
        conn = self.ledger.store.conn
        live = [
            sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in PROJECTION_TABLES
        ]
        conn.execute("BEGIN")
        try:
            assert rebuild(conn) == []
            again = [
                sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in PROJECTION_TABLES
            ]
        finally:
            conn.execute("ROLLBACK")
        assert again == live

    def check_chain(self) -> None:
        assert verify_ledger(self.ledger).ok


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestLedgerInvariants = LedgerMachine.TestCase


def test_chain_verifies_after_a_random_day() -> None:
    machine = LedgerMachine()
    try:
        machine.enrol(CARDS[0], "A")
        machine.earn(CARDS[0], [Line("grocery", 1, 12_345)])
        machine.redeem(CARDS[0], 100)
        machine.check_chain()
    finally:
        machine.teardown()
