"""A property over three tills, random operations and random sync orders, driven
in-process through the same protocol functions the HTTP shell calls:

- HQ's balance is always the sum of the entries it was sent, and after everyone
  syncs, the sum of all three journals;
- each till's view is the balance HQ confirmed at its last sync plus its own
  entries since then (the model keeps both, independently of ``till_view``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import LedgerError
from agent.ledger import Ledger
from agent.till_view import till_view
from sync.hq.db import HQStore
from sync.hq.devices import hq_key
from sync.hq.directory import delta
from sync.hq.ingest import ingest
from sync.hq.projection import balance
from sync.hq.stores import open_store
from sync.protocol import Batch
from sync.till_sync import apply_delta
from tests.sync_helpers import _init, bind, utc_now

OPS = st.lists(
    st.tuples(
        st.sampled_from(["earn", "earn", "redeem", "sync"]), st.integers(0, 2), st.integers(1, 400)
    ),
    min_size=1,
    max_size=25,
)


def _points(ledger: Ledger, after: int = 0) -> int:
    return sum(
        e.body["effects"]["delta"] - e.body["effects"]["expired"]
        for e in ledger.entries()
        if e.seq > after
    )


class World:
    def __init__(self, root: Path) -> None:
        url = f"sqlite:///{root}/hq.db"
        _init(url)
        self.hq: HQStore = open_store(url)
        self.key = hq_key(self.hq)
        self.tills = [Ledger.init(root / f"t{n}", f"S{n}", "T1") for n in range(3)]
        for ledger in self.tills:
            bind(self.hq, ledger.state_dir)
        enrolled = self.tills[0].enrol(name="Pat", phone="0655555555")
        self.member, card = enrolled.member_id, enrolled.card
        # Till 0 knows the member; the others only see the card.
        self.refs = [self.member, card, card]
        self.accounts = [self.member, "C" + card, "C" + card]
        self.acked = [0, 0, 0]
        self.cursor = [0, 0, 0]
        self.confirmed = [0, 0, 0]
        self.synced_at = [0, 0, 0]  # last own seq HQ held when the till last synced
        self.receipts = 0

    def close(self) -> None:
        for ledger in self.tills:
            ledger.close()
        self.hq.close()

    def do(self, op: str, n: int, amount: int) -> None:
        ledger = self.tills[n]
        self.receipts += 1
        try:
            if op == "earn":
                ledger.earn(self.refs[n], f"R{self.receipts}", amount=amount * 100)
            elif op == "redeem":
                ledger.redeem(self.refs[n], f"R{self.receipts}", 100 + amount)
            else:
                self.sync(n)
        except LedgerError as error:
            assert error.code in ("insufficient_points", "below_minimum", "over_receipt_share")

    def sync(self, n: int) -> None:
        ledger = self.tills[n]
        fresh = [e for e in ledger.entries() if e.seq > self.acked[n]]
        for start in range(0, len(fresh), 4):
            chunk = tuple(fresh[start : start + 4])
            ack = ingest(
                self.hq,
                self.key,
                ledger.device_id,
                Batch(ledger.device_id, chunk),
                utc_now(),
                utc_now(),
            )
            self.acked[n] = ack["document"]["head_seq"]
        more = True
        while more:
            document = delta(
                self.hq, self.key, ledger.device_id, self.cursor[n], utc_now(), page=2
            )["document"]
            with ledger.store.transaction() as conn:
                apply_delta(conn, document)
            self.cursor[n], more = document["cursor"], document["more"]
        self.confirmed[n] = balance(self.hq, self.accounts[n])["balance"]
        self.synced_at[n] = self.acked[n]

    def check(self) -> None:
        sent = sum(
            _points(ledger) - _points(ledger, self.acked[n]) for n, ledger in enumerate(self.tills)
        )
        with self.hq.read() as tx:
            row = tx.one("SELECT COALESCE(SUM(delta - expired), 0) FROM entries")
        assert row is not None and int(row[0]) == sent
        for n, ledger in enumerate(self.tills):
            mine = _points(ledger, self.synced_at[n])
            view = till_view(ledger.store.conn, self.accounts[n], ledger.device_id)
            assert view == self.confirmed[n] + mine, (n, view, self.confirmed[n], mine)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, order=st.permutations([0, 1, 2]))
def test_hq_balance_and_till_views_follow_the_journals(
    ops: list[tuple[str, int, int]], order: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as root:
        world = World(Path(root))
        try:
            world.check()
            for op, n, amount in ops:
                world.do(op, n, amount)
                world.check()
            for n in order + order:
                world.sync(n)
            world.check()
            total = sum(_points(ledger) for ledger in world.tills)
            assert balance(world.hq, world.member)["balance"] == total
            for n, ledger in enumerate(world.tills):
                assert till_view(ledger.store.conn, world.accounts[n], ledger.device_id) == total
        finally:
            world.close()
