"""``hq simulate``: a chain's history made through the tills' and HQ's own code.

Each till is a real ``agent.ledger.Ledger`` (its own state directory, Ed25519
device key, rules and SQLite journal) driven by an injected clock, registered
with HQ through the registration request a till sends, and synced by handing
its signed journal to ``sync.hq.ingest.ingest`` in batches of at most 500
entries (in-process: no HTTP, the same verification and exactly-once storage).

Scale: the ledger writes about a thousand facts a second, so a year of a large
chain would take hours. After ``ledger_days`` the tills continue their chains
with ``sync.hq.insight.till_model`` (same rules, same body fields and effects,
signed by the same keys, chained after the ledger's head). The summary says how
many entries each path wrote. The tills' ledgers run with ``synchronous=OFF``:
a simulation needs no durability against power cuts.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import fields
from agent.chain import Entry
from agent.keys import read_private_key
from agent.ledger import Ledger
from drivers.errors import TillpointsError
from sync.hq.db import HQStore
from sync.hq.devices import add_device, hq_key, init_hq, register
from sync.hq.ingest import ingest
from sync.hq.insight.facts import refresh, set_stores
from sync.hq.insight.population import Chain, Event, Member
from sync.hq.insight.till_model import ModelTill, TillState
from sync.protocol import Batch
from sync.till_register import adopt_phone, registration_request

BATCH = 500
DEFAULT_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SMALL_CHAIN = 2_000  # members: below this the ledger writes the whole period
SIMULATED_PHONE_COST = fields.SIMULATED_PHONE_COST


class Clock:
    """The tills' clock: the simulation moves it to each event's moment."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Till:
    """One till: its ledger until the hand-over, then its model; pending uploads."""

    def __init__(self, root: Path, store: str, till: str, clock: Clock) -> None:
        self.path = root / f"{store}-{till}"
        self.ledger: Ledger | None = Ledger.init(self.path, store, till, clock=clock)
        self.ledger.store.skip_fsync()
        self.state = TillState(self.ledger.device_id, store, till, 0, "0" * 64)
        self.model: ModelTill | None = None
        self.pending: list[Entry] = []
        self.ledger_entries = 0
        self._collect()

    @property
    def device(self) -> str:
        return self.state.device

    def _collect(self) -> None:
        assert self.ledger is not None
        for entry in self.ledger.journal.read_from(self.state.seq + 1):
            self.state.observe(entry)
            self.pending.append(entry)
            self.ledger_entries += 1

    def hand_over(self) -> None:
        """Continue this till's chain in the model (same key, same head)."""
        if self.ledger is None:
            return
        key = read_private_key(self.path / "device.key")
        self.model = ModelTill(self.state, key, self.ledger.rules, self.ledger.secrets.phone()[0])
        self.ledger.close()
        self.ledger = None

    def take(self) -> list[Entry]:
        if self.model is not None:
            self.pending.extend(self.model.written)
            self.model.written.clear()
        taken, self.pending = self.pending, []
        return taken

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    # -- what a member does -----------------------------------------------------------

    def enrol(self, member: Member, when: dt.datetime) -> None:
        self.state.by_card[member.card] = member.index
        if self.model is not None:
            self.model.enrol(member, when)
            return
        assert self.ledger is not None
        self.ledger.enrol(
            name=f"Member {member.index}",
            phone=member.phone,
            birthday=member.birthday.isoformat(),
            gender=member.gender,
            district=member.district,
            household=member.household,
            card=member.card,
            consent_marketing=member.consent,
        )
        self._collect()

    def visit(self, event: Event, rules_share: Callable[[int, int], int]) -> None:
        member, when = event.member, event.when
        if self.model is not None:
            self.model.earn(member, event.receipt, event.lines, when)
        else:
            assert self.ledger is not None
            lines = tuple(fields.Line(c, q, a) for c, q, a in event.lines)
            self.ledger.earn(self._ref(member), event.receipt, lines=lines)
            self._collect()
        if not event.redeem_wish:
            return
        amount = sum(a for _, _, a in event.lines)
        available = self._available(member, when.date())
        points = rules_share(int(available * event.redeem_wish), amount)
        if points <= 0:
            return
        if self.model is not None:
            self.model.redeem(member, event.receipt, points, amount, when)
            return
        assert self.ledger is not None
        self.ledger.redeem(self._ref(member), event.receipt, points, amount=amount)
        self._collect()

    def refund(self, event: Event) -> bool:
        sale = self.state.sales.get(event.receipt)
        if sale is None or sale.refunded or sale.amount <= 0:
            return False
        if self.model is not None:
            self.model.refund(event.receipt, event.when)
            return True
        assert self.ledger is not None
        self.ledger.refund(event.receipt)
        self._collect()
        return True

    def _ref(self, member: Member) -> str:
        account, member_id, card, _ = self.state.ref(member)
        return member_id or card or account

    def _available(self, member: Member, day: dt.date) -> int:
        account = self.state.account(self.state.ref(member)[0])
        cap = self.ledger.rules.offline_cap if self.ledger else self.model_cap()
        return max(0, min(account.balance(day.isoformat()), cap))

    def model_cap(self) -> int:
        assert self.model is not None
        return self.model.rules.offline_cap


def simulate(
    store: HQStore,
    *,
    stores: int,
    members: int,
    days: int,
    seed: int = 1,
    start: dt.datetime = DEFAULT_START,
    ledger_days: int | None = None,
    sync_days: int = 7,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Simulate and upload; returns ``stores, devices, members, entries`` and how."""
    started = time.perf_counter()
    # A simulated chain's phone keys are cheap (docs/sync.md, "Phone numbers"): the
    # simulator enrols thousands of made-up members, and nobody's number is at risk.
    init_hq(store, phone_cost=SIMULATED_PHONE_COST)
    chain = Chain(seed, stores, members, days, start)
    if ledger_days is None:
        ledger_days = days if members <= SMALL_CHAIN else min(days, 7)
    set_stores(store, [(s.store_id, s.region) for s in chain.stores])
    root = Path(tempfile.mkdtemp(prefix="tillpoints-sim-"))
    clock = Clock(start)
    signer = hq_key(store)
    tills: dict[tuple[str, str], Till] = {}
    counts = {"enrol": 0, "visit": 0, "refund": 0, "refused": 0, "entries": 0}
    try:
        for s in chain.stores:
            for name in s.tills:
                till = Till(root, s.store_id, name, clock)
                _bind(store, till, signer, start)
                tills[(s.store_id, name)] = till
        share = _redeem_rule(next(iter(tills.values())))
        next_sync, handed = start + dt.timedelta(days=sync_days), ledger_days <= 0
        if handed:
            for till in tills.values():
                till.hand_over()
        for event in chain.events():
            if event.when >= next_sync:
                counts["entries"] += _upload(store, signer, tills, event.when)
                next_sync += dt.timedelta(days=sync_days)
                if progress:
                    progress(f"day {(event.when - start).days}: {counts['entries']} entries")
            if not handed and event.when >= start + dt.timedelta(days=ledger_days):
                for till in tills.values():
                    till.hand_over()
                handed = True
            clock.now = event.when
            till = tills[(event.store, event.till)]
            try:
                if event.kind == "enrol":
                    till.enrol(event.member, event.when)
                elif event.kind == "visit":
                    till.visit(event, share)
                elif not till.refund(event):
                    continue
                counts[event.kind] += 1
            except TillpointsError:
                counts["refused"] += 1
        end = start + dt.timedelta(days=days)
        counts["entries"] += _upload(store, signer, tills, end)
        ledger_written = sum(till.ledger_entries for till in tills.values())
    finally:
        for till in tills.values():
            till.close()
        shutil.rmtree(root, ignore_errors=True)
    refresh(store)
    elapsed = time.perf_counter() - started
    return {
        "stores": stores,
        "devices": len(tills),
        "members": counts["enrol"],
        "entries": counts["entries"],
        "visits": counts["visit"],
        "refunds": counts["refund"],
        "refused": counts["refused"],
        "ledger_entries": ledger_written,
        "model_entries": counts["entries"] - ledger_written,
        "ledger_days": min(ledger_days, days),
        "seed": seed,
        "seconds": round(elapsed, 2),
    }


def _redeem_rule(till: Till) -> Callable[[int, int], int]:
    """Points a member may spend on a sale: whole hundreds, at least the minimum, at
    most the receipt share the rules allow (``Ledger.redeem`` refuses otherwise)."""
    assert till.ledger is not None
    rules = till.ledger.rules

    def share(wanted: int, amount: int) -> int:
        ceiling = int(rules.max_receipt_share * amount * rules.redeem_points_per_unit)
        ceiling //= rules.redeem_unit
        points = min(wanted, ceiling) // 100 * 100
        while points and rules.redemption_value(points) > rules.max_receipt_share * amount:
            points -= 100
        return points if points >= rules.redeem_minimum else 0

    return share


def _bind(store: HQStore, till: Till, signer: Any, now: dt.datetime) -> None:
    token = add_device(store, till.state.store, till.state.till, now)["token"]
    request = registration_request(till.path, token, till.device, till.state.store, till.state.till)
    receipt = register(store, signer, request, now)["document"]
    assert till.ledger is not None
    adopt_phone(till.path, till.ledger.store, receipt)


def _upload(
    store: HQStore, signer: Any, tills: dict[tuple[str, str], Till], now: dt.datetime
) -> int:
    stored = 0
    for till in tills.values():
        entries = till.take()
        for first in range(0, len(entries), BATCH):
            chunk = tuple(entries[first : first + BATCH])
            ack = ingest(store, signer, till.device, Batch(till.device, chunk), now, now)
            stored += int(ack["document"]["stored"])
    return stored
