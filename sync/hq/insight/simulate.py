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

import ctypes
import datetime as dt
import fcntl
import gc
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from agent import fields
from agent.chain import Entry
from agent.entries import Body, Kind
from agent.keys import read_private_key
from agent.ledger import Ledger
from agent.privacy import key_text
from agent.rules import Rules
from agent.store import Store
from drivers.errors import TillpointsError
from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.devices import add_device, hq_key, init_hq, register
from sync.hq.ingest import ingest
from sync.hq.insight.facts import refresh, set_stores
from sync.hq.insight.population import REFUND_DAYS, Chain, Event, Member
from sync.hq.insight.till_model import ModelTill, Signed, TillState
from sync.hq.stores import open_store
from sync.protocol import Batch
from sync.till_register import adopt_phone, registration_request

BATCH = 500
DEFAULT_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SMALL_CHAIN = 2_000  # members: below this the ledger writes the whole period
# Days a larger chain's tills write through their ledgers before the model takes
# over: each till's first day (its registration, enrolments, earns and redemptions
# through the real code). The model writes what the ledger writes across a
# hand-over (tests/test_insight_simulate.py), so more days only cost time: the
# bench size writes the same 32,192 entries with 1, 7 or all 90 (issue 18; 7 was
# the default before: 10-14 % more CPU an entry at the bench size).
LEDGER_DAYS = 1
SIMULATED_PHONE_COST = fields.SIMULATED_PHONE_COST
# HQ's SQLite file while a simulation builds it: no fsync per commit (the tills'
# ledgers already run so) and a larger page cache than SQLite's 2 MB against a
# file of a gigabyte. ``simulate`` makes the result durable at its end.
BUILDING_PRAGMAS = ("PRAGMA synchronous=OFF", "PRAGMA cache_size=-32768")
LEDGER_CACHE_KIB = 256  # each simulated till's ledger's SQLite page cache
# Batches per refresh transaction in a worker: a week of a large chain is about
# a hundred batches, whose entries and their bodies a page holds at once.
REFRESH_PAGE = 16
# The cyclic garbage collector's thresholds while a simulation runs: its processes
# hold hundreds of thousands of long-lived objects (the members, the tills' states)
# and make few cycles, and at Python's (700, 10, 10) full collections that walk them
# all took 0.8 s of a 9 s bench-size run, a tenth of its CPU (issue 18).
COLLECTOR_THRESHOLDS = (50_000, 20, 100)
# Events a worker handles between tries at HQ's file while its upload waits (_deliver).
RETRY_EVERY = 50


class Clock:
    """The tills' clock: the simulation moves it to each event's moment."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Till:
    """One till: its ledger until the hand-over, then its model; pending uploads."""

    def __init__(
        self, root: Path, store: str, till: str, clock: Clock, schema: Path | None = None
    ) -> None:
        self.path = root / f"{store}-{till}"
        self.ledger: Ledger | None = Ledger.init(
            self.path, store, till, clock=clock, schema=schema, durable=False
        )
        # A till's journal of a week fits in a small cache: 100 ledgers a worker at
        # SQLite's default 2 MB each were a fifth of its RSS (issue 18).
        self.ledger.store.cache_kib(LEDGER_CACHE_KIB)
        self.state = TillState(self.ledger.device_id, store, till, 0, "0" * 64)
        self.model: ModelTill | None = None
        # The ledger's entries, then the model's (``Signed``), since the last upload.
        self.pending: list[Entry | Signed] = []
        # The sealing keys of the ledger's enrolments, sent beside them (agent.privacy).
        self.member_keys: dict[str, str] = {}
        self.ledger_entries = 0
        self._collect()

    @property
    def device(self) -> str:
        return self.state.device

    def _collect(self) -> None:
        assert self.ledger is not None
        entries = list(self.ledger.journal.read_from(self.state.seq + 1))
        enrolled = [str(e.body["member"]["member_id"]) for e in entries if e.kind == Kind.ENROL]
        # The keys open the sealed enrolments: the model needs their birthdays.
        keys = self.ledger.store.member_keys(enrolled)
        for entry in entries:
            self.state.observe(entry, keys=keys)
            self.pending.append(entry)
            self.ledger_entries += 1
        for member_id, key in keys.items():
            self.member_keys[member_id] = key_text(key)

    def hand_over(self, shared: list[Rules]) -> None:
        """Continue this till's chain in the model (same key, same head). ``shared``:
        the rules the shard's models run on; a till whose rules equal one of them runs
        on that one, whose rate cache (``Rules.line_points``) then serves every such
        till: 100 tills' own caches of up to 4,096 rates were 40-90 MiB a worker
        (issue 18's RSS), and each priced the same lines again."""
        if self.ledger is None:
            return
        key = read_private_key(self.path / "device.key")
        own = self.ledger.rules
        rules = next((known for known in shared if known == own), None)
        if rules is None:
            shared.append(own)
            rules = own
        self.model = ModelTill(self.state, key, rules, self.ledger.secrets.phone()[0])
        self.ledger.close()
        self.ledger = None

    def take(self) -> list[Entry | Signed]:
        """The entries to upload, as held (``Signed`` for the model's)."""
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
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Simulate and upload; returns ``stores, devices, members, entries`` and how.

    ``workers``: processes the stores are shared among (default: one per core; 1
    runs every till in this process). One process draws the chain's events from
    the seed, in time order, and sends each to the process that holds its store's
    tills, with the hand-over and each upload at the same moment for every till:
    a till's entries and its batches are the same whichever process holds it.
    Each process uploads its tills' entries into HQ's store as it goes, so the
    chain is never held in memory."""
    started = time.perf_counter()
    # Only a file that holds no chain yet is built without fsyncs: a power cut then
    # loses nothing but the simulation; an HQ's real history is never put at risk.
    building = _holds_no_entries(store)
    with _building(store, building), _fewer_collections():
        # A simulated chain's phone keys are cheap (docs/sync.md, "Phone numbers"): the
        # simulator enrols thousands of made-up members, and nobody's number is at risk.
        count = max(1, min(workers or os.cpu_count() or 1, stores))
        if count > 1:
            # The workers' interpreter imports while this process draws the chain.
            _workers()
            multiprocessing.forkserver.ensure_running()
        init_hq(store, phone_cost=SIMULATED_PHONE_COST)
        chain = Chain(seed, stores, members, days, start)
        if ledger_days is None:
            ledger_days = days if members <= SMALL_CHAIN else min(days, LEDGER_DAYS)
        set_stores(store, [(s.store_id, s.region) for s in chain.stores])
        owned: list[list[tuple[str, tuple[str, ...]]]] = [[] for _ in range(count)]
        for number, s in enumerate(chain.stores):
            owned[number % count].append((s.store_id, s.tills))
        routes = {s.store_id: number % count for number, s in enumerate(chain.stores)}
        turn = _turn_file(store, count)
        # The tills' empty ledger, migrated once here while the fork server imports
        # (Store.copy_schema): no worker migrates one, nor imports sqlite_utils.
        with _ledger_schema() as schema:
            plan = _Plan(store.url, store.key_path, start, building, turn, schema)
            shards: list[_Remote] | list[Shard]
            shards = (
                [_Remote(plan, tills) for tills in owned] if count > 1 else [Shard(plan, owned[0])]
            )
            try:
                for message in _messages(chain, start, days, ledger_days, sync_days, progress):
                    if message[0] == EVENT:
                        shards[routes[message[1].store]].send(message)
                    else:
                        for shard in shards:
                            shard.send(message)
                for shard in shards:
                    shard.end()
                totals = Counter[str]()
                for shard in shards:
                    totals.update(shard.finish())
            finally:
                for shard in shards:
                    shard.close()
                if turn is not None:
                    turn.unlink(missing_ok=True)
        refresh(store)
    _settle(store)
    elapsed = time.perf_counter() - started
    totals.update(_spent())
    return {
        "stores": stores,
        "devices": totals["devices"],
        "members": totals["enrol"],
        "entries": totals["entries"],
        "visits": totals["visit"],
        "refunds": totals["refund"],
        "refused": totals["refused"],
        "ledger_entries": totals["ledger_entries"],
        "model_entries": totals["entries"] - totals["ledger_entries"],
        "ledger_days": min(ledger_days, days),
        "seed": seed,
        "seconds": round(elapsed, 2),
        # Every process's CPU, and the sum of each one's peak RSS (an upper bound on
        # the peak of them all at once): what a run costs, whatever else the machine ran.
        "cpu_seconds": round(totals["cpu_ms"] / 1000, 2),
        "peak_rss_mib": round(totals["peak_rss_kib"] / 1024, 1),
    }


# The messages a shard handles, in order: events, and two moments for every till.
EVENT, HAND_OVER, UPLOAD = "event", "hand_over", "upload"
Message = tuple[Any, ...]


def _messages(
    chain: Chain,
    start: dt.datetime,
    days: int,
    ledger_days: int,
    sync_days: int,
    progress: Callable[[str], None] | None,
) -> Iterator[Message]:
    """The chain's events, the hand-over from ledger to model and the uploads (every
    ``sync_days``, and at the end), in the order a single process met them."""
    next_sync, handed = start + dt.timedelta(days=sync_days), ledger_days <= 0
    if handed:
        yield (HAND_OVER,)
    for events, event in enumerate(chain.events()):
        if event.when >= next_sync:
            yield (UPLOAD, event.when)
            next_sync += dt.timedelta(days=sync_days)
            if progress:
                progress(f"day {(event.when - start).days}: {events} events")
        if not handed and event.when >= start + dt.timedelta(days=ledger_days):
            yield (HAND_OVER,)
            handed = True
        yield (EVENT, event)
    yield (UPLOAD, start + dt.timedelta(days=days))


@dataclass(frozen=True)
class _Plan:
    """What every shard needs to reach HQ: its store's URL and key, the first day."""

    url: str
    key_path: Path | None
    start: dt.datetime
    building: bool  # HQ's file is new: written without fsyncs until the end (_building)
    turn: Path | None = None  # the workers' lock on HQ's SQLite file (_Turn)
    schema: Path | None = None  # the tills' empty migrated ledger (Store.copy_schema)


class Shard:
    """Some stores' tills: made, registered and run here, uploading as they go."""

    def __init__(self, plan: _Plan, tills: list[tuple[str, tuple[str, ...]]]) -> None:
        self.store = open_store(plan.url, plan.key_path)
        if plan.building:
            _without_fsync(self.store)
        self.signer = hq_key(self.store)
        self.turn = _Turn(plan.turn)
        self.root = Path(tempfile.mkdtemp(prefix="tillpoints-sim-"))
        self.clock = Clock(plan.start)
        self.today = plan.start.date()
        self.tills: dict[tuple[str, str], Till] = {}
        self.counts = Counter[str]()
        # Batches cut at their upload's moment and not yet delivered (``_deliver``),
        # and the events handled since the first of them was cut.
        self.outgoing: list[_Cut] = []
        self.since_cut = 0
        try:
            # Each till's ledger starts as a copy of one empty migrated ledger
            # instead of migrating its own (Store.copy_schema).
            for store_id, names in tills:
                for name in names:
                    till = Till(self.root, store_id, name, self.clock, plan.schema)
                    with self.turn:  # HQ's device rows: one worker at a time (_Turn)
                        _bind(self.store, till, self.signer, plan.start)
                    self.tills[(store_id, name)] = till
        except BaseException:
            self.close()
            raise
        self.share = _redeem_rule(next(iter(self.tills.values())))

    def send(self, message: Message) -> None:
        if message[0] == EVENT:
            self._event(message[1])
            if self.outgoing:
                self.since_cut += 1
                if self.since_cut % RETRY_EVERY == 0:
                    self._deliver(wait=False)
        elif message[0] == HAND_OVER:
            shared: list[Rules] = []
            for till in self.tills.values():
                till.hand_over(shared)
            _give_back()
        else:
            self.outgoing.extend(_cuts(self.tills, message[1]))
            self._deliver(wait=False)

    def _deliver(self, wait: bool) -> None:
        """Upload the batches cut so far, and refresh after them, if it is this
        worker's turn at HQ's file (``_Turn``); else, unless ``wait``, leave them
        for later and go back to the tills. Each batch was cut at its upload's
        moment and is stored as of it, so when it reaches HQ changes nothing but
        that neither worker waits for the other's upload."""
        if not self.outgoing or not self.turn.take(wait):
            return
        try:
            for cut in self.outgoing:
                ack = ingest(self.store, self.signer, cut.device, cut.batch(), cut.now, cut.now)
                self.counts["entries"] += int(ack["document"]["stored"])
            known = _Known(self.outgoing)
            self.outgoing = []
            self._refresh(known)
        finally:
            self.turn.give()
        self.since_cut = 0

    def _refresh(self, known: _Known) -> None:
        """The report tables follow each upload here, in the worker, not once at
        the end in one process: the refresh is incremental and takes turns on its
        cursor, so whichever worker comes first reads every new batch. A refresh
        that finds HQ's store busy past its timeout is left to the next upload's
        (or ``simulate``'s last): it moves its cursor only with what it wrote, and
        that page reads its bodies' JSON from HQ's store, not ``known``. On
        PostgreSQL, whose workers do not take turns at the whole store, a refresh that
        finds the other worker's holding the cursor does not wait for it either: the
        workers waited on each other's refreshes for two fifths of a bench-size run."""
        try:
            refresh(self.store, REFRESH_PAGE, known, wait=False)
        except SyncError as error:
            if error.code != "storage_unavailable":
                raise
            self.counts["refresh_deferred"] += 1

    def _event(self, event: Event) -> None:
        self.clock.now = event.when
        if event.when.date() != self.today:
            self._new_day(event.when.date())
        till = self.tills[(event.store, event.till)]
        try:
            if event.kind == "enrol":
                till.enrol(event.member, event.when)
            elif event.kind == "visit":
                till.visit(event, self.share)
            elif not till.refund(event):
                return
            self.counts[event.kind] += 1
        except TillpointsError:
            self.counts["refused"] += 1

    def _new_day(self, today: dt.date) -> None:
        """Forget the sales no event can refund any more: a refund comes on one of
        the ``population.REFUND_DAYS`` days after its sale (a day more is kept for the
        ledger's days). Each day, not at each upload: a worker held up to 19 days of
        its tills' sales in December, 40 MiB at the full size (issue 18's RSS)."""
        self.today = today
        forget = (today - dt.timedelta(days=REFUND_DAYS + 1)).isoformat()
        for till in self.tills.values():
            till.state.forget_sales(forget)

    def end(self) -> None:
        """Nothing to do: this process handled each message as it was sent."""

    def finish(self) -> Counter[str]:
        self._deliver(wait=True)
        self.counts["devices"] = len(self.tills)
        self.counts["ledger_entries"] = sum(till.ledger_entries for till in self.tills.values())
        return self.counts

    def close(self) -> None:
        for till in self.tills.values():
            till.close()
        self.store.close()
        self.turn.close()
        shutil.rmtree(self.root, ignore_errors=True)


# -- shards in worker processes ----------------------------------------------------

CHUNK = 2_000  # messages per hand-off to a worker
QUEUED = 8  # chunks waiting per worker: the parent runs at most this far ahead


# An event crosses to a worker as its fields in a tuple, not as the dataclass (whose
# pickling is a reduce call and a __dict__ a field: twice the bytes' cost each way).
_EVENT_FIELDS = tuple(field.name for field in dataclass_fields(Event))
_MEMBER_AT = _EVENT_FIELDS.index("member")
_event_values = attrgetter(*_EVENT_FIELDS)
# What of a member a worker's tills read (Till, till_model): the rest stays here.
_UNREAD = {"home": "", "rate": 0.0, "routine": "", "missions": (), "enrol_at": 0.0}


def _crossing(event: Event, member: Member | int) -> Message:
    """An event message as it crosses to a worker (``_arrived`` reads it)."""
    values = _event_values(event)
    return (EVENT, *values[:_MEMBER_AT], member, *values[_MEMBER_AT + 1 :])


def _arrived(message: Message, members: dict[int, Member]) -> Message:
    """The event message ``_crossing`` sent, with its member (kept from its first
    crossing by index, only the fields the tills read)."""
    member = message[1 + _MEMBER_AT]
    if isinstance(member, Member):
        members[member.index] = member
    else:
        member = members[member]
    values = list(message[1:])
    values[_MEMBER_AT] = member
    return (EVENT, Event(*values))


class _Remote:
    """A ``Shard`` in a worker process, fed chunks of messages through a bounded
    queue. Members cross once each (what the tills read of them): an event names
    one by index after that."""

    def __init__(self, plan: _Plan, tills: list[tuple[str, tuple[str, ...]]]) -> None:
        context = _workers()
        self.inbox: multiprocessing.Queue[Any] = context.Queue(QUEUED)
        self.outbox: multiprocessing.Queue[Any] = context.Queue()
        self.process = context.Process(
            target=_serve, args=(plan, tills, self.inbox, self.outbox), daemon=True
        )
        self.process.start()
        self.chunk: list[Message] = []
        self.sent: set[int] = set()

    def send(self, message: Message) -> None:
        if message[0] == EVENT:
            event = message[1]
            index = event.member.index
            if index in self.sent:
                message = _crossing(event, index)
            else:
                self.sent.add(index)
                message = _crossing(event, replace(event.member, **_UNREAD))
        self.chunk.append(message)
        if len(self.chunk) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        self._put(self.chunk)
        self.chunk = []

    def _put(self, item: list[Message] | None) -> None:
        while True:
            try:
                self.inbox.put(item, timeout=1)
                return
            except queue.Full:
                self._alive()

    def _alive(self) -> None:
        if not self.process.is_alive():
            raise _failed(self.outbox)

    def end(self) -> None:
        """The last chunk, and the end of the messages. ``simulate`` ends every
        worker's messages before it waits for any worker's answer: a worker whose
        last chunk waited for another's whole end idled (0.6 s of 5 at bench size)."""
        self._flush()
        self._put(None)

    def finish(self) -> Counter[str]:
        while True:
            try:
                answer = self.outbox.get(timeout=1)
                break
            except queue.Empty:
                self._alive()
        if isinstance(answer, tuple):
            raise SyncError(*answer)
        counts: Counter[str] = answer
        return counts

    def close(self) -> None:
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        # Chunks a dead worker never read must not hold this process at its exit.
        self.inbox.cancel_join_thread()


# What a worker runs, imported once by the fork server that starts the workers.
# (No ``sqlite_utils``, which a ledger's migrations import: the tills' ledgers are
# copies of one the parent migrated, ``_Plan.schema``.)
WORKER_MODULES = [__name__]


def _workers() -> Any:
    """The workers' start method: a fork server, a fresh interpreter (it holds no
    HQ connection, so none crosses into a worker) that imports ``WORKER_MODULES``
    once and forks each worker from itself, instead of each spawned worker
    importing the whole code again (about half a second each, issue 18). The
    fork server is this process's, shared by every simulation it runs."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def _failed(outbox: multiprocessing.Queue[Any]) -> SyncError:
    try:
        answer = outbox.get(timeout=1)
    except queue.Empty:
        answer = None
    if isinstance(answer, tuple):
        return SyncError(*answer)
    return SyncError("simulation_worker_failed", "a simulation worker process died")


def _serve(
    plan: _Plan,
    tills: list[tuple[str, tuple[str, ...]]],
    inbox: multiprocessing.Queue[Any],
    outbox: multiprocessing.Queue[Any],
) -> None:
    """A worker process: run a shard on the chunks it is sent, answer its counts
    (or the error that stopped it)."""
    members: dict[int, Member] = {}
    try:
        gc.set_threshold(*COLLECTOR_THRESHOLDS)  # this process's whole life (_fewer_collections)
        shard = Shard(plan, tills)
        try:
            while (chunk := inbox.get()) is not None:
                for message in chunk:
                    shard.send(_arrived(message, members) if message[0] == EVENT else message)
            counts = shard.finish()
            counts.update(_spent())
            outbox.put(counts)
        finally:
            shard.close()
    except Exception as error:  # noqa: BLE001 (handed to the parent, which raises it)
        # (code, message): an error's own __init__ may not survive pickling.
        code = getattr(error, "code", "simulation_worker_failed")
        outbox.put((str(code), f"simulation worker: {type(error).__name__}: {error}"))


def _spent() -> Counter[str]:
    """This process's CPU (milliseconds) and peak RSS (KiB) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Counter(
        cpu_ms=round((usage.ru_utime + usage.ru_stime) * 1000), peak_rss_kib=usage.ru_maxrss
    )


def _give_back() -> None:
    """Return the closed ledgers' freed memory to the system: their SQLite page
    caches and rows leave the C heap fragmented, and glibc keeps what it can reuse
    (about 390 MiB a worker at full size, issue 18), unless asked to trim."""
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to ask
        return
    libc.malloc_trim(0)


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


def _connection(store: HQStore) -> Any:
    """HQ's SQLite connection of this thread, or None on PostgreSQL."""
    return store._conn() if store.dialect == "sqlite" else None  # type: ignore[attr-defined]


def _without_fsync(store: HQStore) -> Any:
    """``BUILDING_PRAGMAS`` on this connection to HQ's SQLite file (a worker's
    closes with the worker); returns it (None on PostgreSQL)."""
    conn = _connection(store)
    for pragma in BUILDING_PRAGMAS if conn is not None else ():
        conn.execute(pragma)
    return conn


@contextmanager
def _building(store: HQStore, building: bool) -> Iterator[None]:
    """HQ's new file runs without an fsync per commit while the simulation builds
    it (``BUILDING_PRAGMAS``): a simulation needs no durability against power cuts
    until it has finished (``_settle``). The caller's connection is back to
    ``synchronous=FULL`` however the simulation ends."""
    conn = _without_fsync(store) if building else None
    try:
        yield
    finally:
        if conn is not None:
            conn.execute("PRAGMA synchronous=FULL")


def _turn_file(store: HQStore, workers: int) -> Path | None:
    """The file the workers lock in turn to write HQ's SQLite file (``_Turn``);
    None where one writer is all there is (one shard) or writers do not queue
    on the whole file (PostgreSQL)."""
    if workers < 2 or store.dialect != "sqlite":
        return None
    handle, name = tempfile.mkstemp(prefix="tillpoints-sim-turn-")
    os.close(handle)
    return Path(name)


class _Turn:
    """The workers' turns at HQ's SQLite file: a worker uploads and refreshes
    holding an exclusive ``flock`` on ``path``, and the other sleeps in the kernel
    until it is released. Both workers upload at the same simulated moment; left to
    SQLite, the second polls the write lock with sleeps of up to 100 ms and
    oversleeps each release (3-6 % of a worker's time, issue 18), and the two
    interleave batch by batch, so neither goes back to its tills before both are
    done. In turns, the first goes back to its tills while the second uploads.
    And a worker that finds the file taken at its upload's moment does not wait at
    all: it keeps the batches it cut then and goes back to its tills, trying again
    every ``RETRY_EVERY`` events (``Shard._deliver``); only its last upload waits."""

    def __init__(self, path: Path | None) -> None:
        self.handle = path.open("rb") if path is not None else None

    def take(self, wait: bool = True) -> bool:
        """This worker's turn: waited for, or (``wait=False``) taken only if free."""
        if self.handle is None:
            return True
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def give(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)

    def __enter__(self) -> None:
        self.take()

    def __exit__(self, *_: object) -> None:
        self.give()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """``COLLECTOR_THRESHOLDS`` in this process while the simulation runs; the
    caller's thresholds back afterwards. The collector still runs: only less often."""
    before = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def _ledger_schema() -> Iterator[Path]:
    """An empty migrated ledger in a folder of its own, removed afterwards: what
    each simulated till's ledger starts as (``Store.copy_schema``)."""
    with tempfile.TemporaryDirectory(prefix="tillpoints-sim-schema-") as folder:
        path = Path(folder) / "ledger.db"
        Store.make_schema(path)
        yield path


def _holds_no_entries(store: HQStore) -> bool:
    """Whether HQ's store holds no till's entry yet (a new file, or one just
    initialised): what ``_building`` may relax."""
    with store.read() as tx:
        return tx.one("SELECT 1 FROM entries LIMIT 1") is None


def _settle(store: HQStore) -> None:
    """The finished chain as HQ keeps it: on SQLite the WAL checkpointed
    into the file (``compact``), which ``synchronous=FULL`` syncs; on PostgreSQL its
    tables analysed. A chain loaded in one go has no planner statistics until
    autovacuum comes by: at the full size a member's balance then took a second (a
    plan for 26,000 rows a member, compiled by JIT), and 0.6 ms analysed."""
    if store.dialect == "sqlite":
        store.compact(())
        return
    with store.write() as tx:
        tables = [str(row[0]) for row in tx.all(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "ORDER BY tablename")]  # fmt: skip
        tx.run("ANALYZE " + ", ".join(tables))


def _bind(store: HQStore, till: Till, signer: Any, now: dt.datetime) -> None:
    token = add_device(store, till.state.store, till.state.till, now)["token"]
    request = registration_request(till.path, token, till.device, till.state.store, till.state.till)
    receipt = register(store, signer, request, now)["document"]
    assert till.ledger is not None
    adopt_phone(till.path, till.ledger.store, receipt)


@dataclass(frozen=True)
class _Cut:
    """A batch as a till cut it at its upload's moment ``now``, its model entries
    held as ``Signed`` until it is sent: ``batch`` writes their bodies' dicts then,
    one batch at a time, not a week of them at once (issue 18's RSS)."""

    device: str
    held: tuple[Entry | Signed, ...]
    keys: dict[str, str]  # the sealing keys of the batch's enrolments (agent.privacy)
    now: dt.datetime

    def batch(self) -> Batch:
        device = self.device
        entries = tuple(e if isinstance(e, Entry) else e.entry(device) for e in self.held)
        return Batch(device, entries, self.keys)


def _cuts(tills: dict[tuple[str, str], Till], now: dt.datetime) -> Iterator[_Cut]:
    """Each till's entries since its last upload, in batches of at most ``BATCH``
    with the sealing keys of their enrolments: what the tills send at ``now``. (Only
    the ledger seals an enrolment: the model's are in the clear, ``ModelTill.enrol``.)"""
    for till in tills.values():
        held = till.take()
        for first in range(0, len(held), BATCH):
            chunk = tuple(held[first : first + BATCH])
            enrolled = [
                str(e.body["member"]["member_id"])
                for e in chunk
                if isinstance(e, Entry) and e.kind == Kind.ENROL
            ]
            keys = {m: till.member_keys.pop(m) for m in enrolled if m in till.member_keys}
            yield _Cut(till.device, chunk, keys, now)


class _Known(Mapping[tuple[str, int], Body]):
    """The typed bodies of the model's entries in ``cuts`` by ``(device, seq)``:
    ``facts.refresh``'s ``known``, read from the cuts instead of copied into a dict.
    A till's entries are consecutive across its cuts, so a seq is an offset."""

    def __init__(self, cuts: list[_Cut]) -> None:
        self.held: dict[str, list[Entry | Signed]] = {}
        for cut in cuts:
            self.held.setdefault(cut.device, []).extend(cut.held)

    def get(self, key: tuple[str, int], default: Any = None) -> Any:
        """Without a KeyError for a miss: the refresh also reads the other worker's
        entries, half of what it looks up."""
        device, seq = key
        held = self.held.get(device)
        if held:
            at = seq - held[0].seq
            if 0 <= at < len(held):
                item = held[at]
                if type(item) is Signed and item.seq == seq:
                    return item.body
        return default

    def __getitem__(self, key: tuple[str, int]) -> Body:
        body: Body | None = self.get(key)
        if body is None:
            raise KeyError(key)
        return body

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for device, held in self.held.items():
            for item in held:
                if isinstance(item, Signed):
                    yield device, item.seq

    def __len__(self) -> int:
        return sum(isinstance(item, Signed) for held in self.held.values() for item in held)
