"""The upload machine (``sync.upload``): every row of its table, the answers it
reads, and a property over an in-process model HQ.

The model HQ stores each entry exactly once, keyed by seq, and answers like
the real one: ``sync.hq.judge`` decides, the answers are signed with a real
HQ key (so ``read_answer`` checks them as in a run). Hypothesis chooses in
which order HQ takes the requests on the wire (a batch may overtake the one
before it) and in which order the answers come back, drops some of either
(the client gives up: ``hq_unreachable``), cuts HQ's tail (restored from a
backup), and lets a clone of the till upload another history meanwhile. Each
run begins where a real run begins, at HQ's head; runs are repeated while
faults remain, as an operator's timer would.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.chain import GENESIS_PREV, Entry, sign_entry
from agent.keys import device_id_for
from sync.errors import SyncError, refused, unreachable
from sync.hq.ingest import signed_head
from sync.hq.judge import Head, judge, overlap_range
from sync.protocol import ACK_TAG, Ack, signed
from sync.upload import (
    TABLE,
    Accept,
    Acked,
    Action,
    Behind,
    Done,
    Fail,
    Lost,
    Read,
    Refused,
    Send,
    Signal,
    Stall,
    State,
    UploadMachine,
    read_answer,
)

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
TILL_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HQ_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
DEVICE = device_id_for(TILL_KEY.public_key())


def _chain(count: int, start: int = 1, prev: str = GENESIS_PREV, tag: str = "J") -> list[Entry]:
    entries = []
    for seq in range(start, start + count):
        body = {"account": "M1", "receipt": f"{tag}{seq}", "effects": {"delta": 1, "expired": 0}}
        ts = (NOW + dt.timedelta(seconds=seq)).isoformat(timespec="milliseconds")
        entry = sign_entry(
            TILL_KEY, device=DEVICE, seq=seq, ts=ts, kind="earn", staff=None, body=body, prev=prev
        )
        entries.append(entry)
        prev = entry.hash
    return entries


JOURNAL = _chain(30)


# -- every row of the table ------------------------------------------------------------

ROWS_SEEN: set[tuple[State, Signal, State]] = set()


def _acked(seq: int, stored: int = 1) -> Acked:
    return Acked({"device": DEVICE, "head_seq": seq}, seq, stored)


def _behind(seq: int) -> Behind:
    return Behind({"device": DEVICE, "head_seq": seq}, seq, seq + 1)


def _machine(acked: int = 0, total: int = 9, window: int = 2) -> UploadMachine:
    machine = UploadMachine(window=window)
    machine.begin(acked, total)
    return machine


def _two_on_the_wire() -> UploadMachine:
    """Batches 0 (1..3) and 1 (4..6) sent, the journal ends at 9."""
    machine = _machine()
    assert machine.read(1, 3) == [Send(0, 1, 3), Read(4)]
    assert machine.read(4, 6) == [Send(1, 4, 6)]
    assert machine.state is State.WAITING
    return machine


def _seen(machine: UploadMachine) -> list[tuple[State, Signal, State]]:
    ROWS_SEEN.update(machine.trail)
    return machine.trail


def test_head_then_room_reads_after_hqs_head() -> None:
    machine = UploadMachine()
    assert machine.begin(4, 9) == [Read(5)]
    assert _seen(machine) == [
        (State.START, Signal.HEAD, State.WAITING),
        (State.WAITING, Signal.ROOM, State.READING),
    ]


def test_idle_when_hq_holds_the_whole_journal() -> None:
    machine = UploadMachine()
    assert machine.begin(9, 9) == [Done(9, 0)]
    assert (State.WAITING, Signal.IDLE, State.DONE) in _seen(machine)
    assert machine.state is State.DONE


def test_batch_is_sent_and_the_next_read_while_the_window_has_room() -> None:
    machine = _two_on_the_wire()
    assert _seen(machine)[2:] == [
        (State.READING, Signal.BATCH, State.WAITING),
        (State.WAITING, Signal.ROOM, State.READING),
        (State.READING, Signal.BATCH, State.WAITING),
    ]
    one = _machine(window=1)
    assert one.read(1, 3) == [Send(0, 1, 3)]  # a window of one waits for the answer


def test_journal_end_stops_reading_and_finishes_once_answered() -> None:
    machine = _machine()
    machine.read(1, 3)
    assert machine.journal_end() == []
    assert (State.READING, Signal.JOURNAL_END, State.WAITING) in _seen(machine)
    assert machine.answered(0, _acked(3, 3)) == [Accept(_acked(3).head, 3), Done(3, 3)]
    empty = _machine()
    assert empty.journal_end() == [Done(0, 0)]  # a journal shorter than its head said


def test_ack_moves_on_and_done_after_the_last() -> None:
    machine = _two_on_the_wire()
    assert machine.answered(0, _acked(3, 3)) == [Accept(_acked(3).head, 3), Read(7)]
    assert machine.read(7, 9) == [Send(2, 7, 9)]
    assert machine.answered(1, _acked(6, 3))[0] == Accept(_acked(6).head, 3)
    assert machine.answered(2, _acked(9, 3)) == [Accept(_acked(9).head, 3), Done(9, 9)]
    assert (State.WAITING, Signal.ACK, State.WAITING) in _seen(machine)


def test_an_early_answer_waits_for_the_one_before() -> None:
    machine = _two_on_the_wire()
    assert machine.answered(1, _acked(6, 3)) == []
    assert machine.answered(0, _acked(3, 3)) == [
        Accept(_acked(3).head, 3),
        Accept(_acked(6).head, 3),
        Read(7),
    ]
    assert (State.WAITING, Signal.EARLY, State.WAITING) in _seen(machine)


def test_an_ack_of_another_head_drains_then_resumes_after_it() -> None:
    machine = _two_on_the_wire()
    assert machine.answered(0, _acked(5, 0)) == [Accept(_acked(5).head, 0)]
    assert machine.state is State.DRAINING
    assert machine.answered(1, _acked(6, 1)) == [Read(6)]  # dropped; resume after 5
    assert _seen(machine)[-4:] == [
        (State.WAITING, Signal.ACK_ELSEWHERE, State.DRAINING),
        (State.DRAINING, Signal.DROPPED, State.DRAINING),
        (State.DRAINING, Signal.DRAINED, State.WAITING),
        (State.WAITING, Signal.ROOM, State.READING),
    ]


def test_behind_drains_accepts_hqs_head_then_resends() -> None:
    machine = _two_on_the_wire()
    assert machine.answered(0, _behind(0)) == []
    assert machine.state is State.DRAINING
    assert machine.answered(1, Lost(unreachable("x"))) == [Accept(_behind(0).head, None), Read(1)]
    assert (State.WAITING, Signal.BEHIND, State.DRAINING) in _seen(machine)


def test_a_batch_that_overtook_its_predecessor_is_resent_after_the_newer_ack() -> None:
    machine = _two_on_the_wire()
    assert machine.answered(1, _behind(0)) == []  # HQ saw 4..6 first
    assert machine.answered(0, _acked(3, 3)) == [Accept(_acked(3).head, 3), Read(4)]
    assert machine.acked == 3  # HQ's older head (0) is not taken


def test_an_early_answer_is_dropped_when_the_oldest_asks_to_resume() -> None:
    machine = _two_on_the_wire()
    assert machine.answered(1, Refused(refused("fork", "f"))) == []
    assert machine.answered(0, _behind(0)) == [Accept(_behind(0).head, None), Read(1)]


def test_stuck_when_a_resume_does_not_move_hqs_head() -> None:
    machine = _machine(window=1)
    machine.read(1, 3)
    assert machine.answered(0, _behind(0)) == [Accept(_behind(0).head, None), Read(1)]
    machine.read(1, 3)
    assert machine.answered(1, _behind(0)) == [Accept(_behind(0).head, None), Stall(1)]
    assert machine.state is State.STALLED
    assert (State.DRAINING, Signal.STUCK, State.STALLED) in _seen(machine)


def test_stuck_on_acks_that_keep_hqs_head_where_it_was() -> None:
    """An HQ that acknowledges an older head again and again: the run stops."""
    machine = _machine(window=1)
    machine.read(1, 3)
    assert machine.answered(0, _acked(1, 0)) == [Accept(_acked(1).head, 0), Read(2)]
    machine.read(2, 4)
    assert machine.answered(1, _acked(1, 0)) == [Accept(_acked(1).head, 0), Stall(None)]


def test_refused_and_lost_end_the_session() -> None:
    machine = _two_on_the_wire()
    error = refused("fork", "another history")
    assert machine.answered(0, Refused(error)) == [Fail(error)]
    assert machine.state is State.FAILED
    lost = _two_on_the_wire()
    gone = unreachable("HQ not reached")
    assert lost.answered(0, Lost(gone)) == [Fail(gone)]
    assert (State.WAITING, Signal.REFUSED, State.FAILED) in _seen(machine)
    assert (State.WAITING, Signal.LOST, State.FAILED) in _seen(lost)


def test_events_out_of_place_are_named_errors() -> None:
    reading = _machine()
    with pytest.raises(SyncError) as caught:
        reading.answered(0, _acked(3))
    assert caught.value.code == "sync_state"
    waiting = _two_on_the_wire()
    for wrong in (
        lambda: waiting.read(7, 9),
        lambda: waiting.journal_end(),
        lambda: waiting.begin(0, 9),
        lambda: waiting.answered(5, _acked(3)),
    ):
        with pytest.raises(SyncError) as caught:
            wrong()
        assert caught.value.code == "sync_state"
    waiting.answered(1, _acked(6))
    with pytest.raises(SyncError):
        waiting.answered(1, _acked(6))  # answered twice
    backwards = _machine()
    with pytest.raises(SyncError, match="read from 1"):
        backwards.read(0, 0)
    done = _two_on_the_wire()
    done.answered(0, Lost(unreachable("x")))
    with pytest.raises(SyncError, match="state failed"):
        done.answered(1, _acked(6))


def test_zz_every_row_of_the_table_is_exercised() -> None:
    """Runs after the row tests above (pytest keeps file order)."""
    assert {(state, signal) for state, signal, _ in ROWS_SEEN} == set(TABLE)
    assert all(TABLE[(state, signal)] is following for state, signal, following in ROWS_SEEN)


# -- HQ's answers ------------------------------------------------------------------------


def test_read_answer_checks_hqs_signatures() -> None:
    public = HQ_KEY.public_key()
    ack = Ack(DEVICE, 3, "ab" * 32, 3, "2026-12-03T00:00:00Z").to_json()
    assert read_answer(200, signed(HQ_KEY, ACK_TAG, ack), public) == Acked(ack, 3, 3)
    forged = read_answer(200, signed(TILL_KEY, ACK_TAG, ack), public)
    assert isinstance(forged, Refused) and forged.error.code == "bad_hq_signature"
    head = signed_head(HQ_KEY, DEVICE, 2, "cd" * 32, NOW)
    behind = {"error": "expected_seq", "message": "m", "expected_seq": 3, "head": head}
    assert read_answer(409, behind, public) == Behind(head["document"], 2, 3)
    behind["head"] = signed_head(TILL_KEY, DEVICE, 2, "cd" * 32, NOW)
    answer = read_answer(409, behind, public)
    assert isinstance(answer, Refused) and answer.error.code == "bad_hq_signature"
    wrong_type = signed(HQ_KEY, ACK_TAG, {**ack, "stored": "many"})
    answer = read_answer(200, wrong_type, public)
    assert isinstance(answer, Refused) and answer.error.code == "bad_ack"
    answer = read_answer(409, {"error": "fork", "message": "f", "seq": 4}, public)
    assert isinstance(answer, Refused)
    assert (answer.error.code, answer.error.exit_status) == ("fork", 3)
    answer = read_answer(422, {"error": "sequence_gap", "message": "g"}, public)
    assert isinstance(answer, Refused)
    assert (answer.error.code, answer.error.exit_status) == ("sequence_gap", 4)


# -- the property: a model HQ that drops, delays and reorders ----------------------------


class ModelHQ:
    """HQ's storage and verdicts for one device, in memory: each seq stored once."""

    def __init__(self, held: Sequence[Entry]) -> None:
        self.entries: dict[int, Entry] = {}
        self.store(held)

    def store(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            assert entry.seq not in self.entries, f"entry {entry.seq} stored twice"
            self.entries[entry.seq] = entry

    def head(self) -> tuple[int, str]:
        if not self.entries:
            return 0, GENESIS_PREV
        seq = max(self.entries)
        return seq, self.entries[seq].hash

    def upload(self, batch: Sequence[Entry]) -> tuple[int, dict[str, Any]]:
        """``sync.hq.ingest`` without the database: judge, store, answer signed."""
        seq, digest = self.head()
        span = overlap_range(batch, seq)
        low, high = span or (1, 0)
        held = {s: self.entries[s].hash for s in range(low, high + 1)}
        key = TILL_KEY.public_key()
        verdict = judge(DEVICE, batch, Head(seq, digest, key), held, [key])
        if verdict.outcome == "accept":
            self.store(verdict.new_entries)
            seq, digest = self.head()
            ack = Ack(DEVICE, seq, digest, len(verdict.new_entries), "2026-12-03T00:00:00Z")
            return 200, signed(HQ_KEY, ACK_TAG, ack.to_json())
        if verdict.outcome == "gap":
            return 409, {
                "error": "expected_seq",
                "message": verdict.reason,
                "expected_seq": verdict.expected_seq,
                "head": signed_head(HQ_KEY, DEVICE, seq, digest, NOW),
            }
        status = 409 if verdict.outcome == "fork" else 422
        return status, {"error": verdict.code, "message": verdict.reason}

    def restore_backup(self, seq: int) -> None:
        """HQ loses every entry after ``seq``."""
        self.entries = {s: e for s, e in self.entries.items() if s <= seq}


@dataclass
class Faults:
    """What hypothesis may still do to the runs; spent, the network is perfect."""

    drops: int
    backups: int
    rival: list[Entry] = field(default_factory=list)  # a clone's other history, to upload


@dataclass
class Run:
    outcome: str  # "done", an error code, or "stalled"
    steps: int
    sent: int
    backups: int  # HQ restored from a backup during this run


def _bound(journal_size: int, batch_entries: int, window: int) -> int:
    """Steps a run may take: each resume moves HQ's head at least one entry,
    between two resumes the batches go forward through the journal."""
    passes = journal_size + 3
    batches = journal_size // batch_entries + window + 2
    return passes * batches * 8


def _one_run(
    hq: ModelHQ,
    journal: Sequence[Entry],
    faults: Faults,
    data: st.DataObject,
    batch_entries: int,
    window: int,
) -> Run:
    """One ``tillpoints sync`` upload: the shell's head check, then the machine."""
    local = {entry.seq: entry for entry in journal}
    total = max(local, default=0)
    seq, digest = hq.head()
    if seq > total or (seq > 0 and (seq not in local or local[seq].hash != digest)):
        return Run("restored_from_backup", 0, 0, 0)
    machine = UploadMachine(window=window)
    actions: deque[Action] = deque(machine.begin(seq, total))
    on_the_way: list[tuple[int, list[Entry]]] = []  # sent, HQ has not taken them yet
    answers: list[tuple[int, tuple[int, dict[str, Any]] | None]] = []  # None: dropped
    run = Run("", 0, 0, 0)
    bound = _bound(len(journal), batch_entries, window)
    unsent: dict[int, list[Entry]] = {}
    try:
        while True:
            run.steps += 1
            assert run.steps <= bound, f"no end after {bound} steps: {machine.trail[-8:]}"
            if not actions:
                _network_step(hq, faults, data, machine, on_the_way, answers, actions, run)
                continue
            action = actions.popleft()
            if isinstance(action, Read):
                batch = [entry for entry in journal if entry.seq >= action.start][:batch_entries]
                if not batch:
                    actions.extend(machine.journal_end())
                    continue
                unsent[batch[0].seq] = batch
                actions.extend(machine.read(batch[0].seq, batch[-1].seq))
            elif isinstance(action, Send):
                assert 1 <= action.first <= action.last <= total, "sent beyond the journal"
                on_the_way.append((action.n, unsent.pop(action.first)))
                run.sent += 1
            elif isinstance(action, Accept):
                # sync.till_sync._accept_head: HQ's head must be this journal's entry.
                seq, digest = int(action.head["head_seq"]), str(action.head["head_hash"])
                if seq > total or (seq > 0 and (seq not in local or local[seq].hash != digest)):
                    run.outcome = "restored_from_backup"
                    return run
            elif isinstance(action, Done):
                assert action.acked <= total
                run.outcome = "done"
                return run
            elif isinstance(action, Fail):
                run.outcome = action.error.code
                return run
            else:
                assert isinstance(action, Stall)
                run.outcome = "stalled"
                return run
    finally:  # what the runs went through (--hypothesis-show-statistics)
        event(f"outcome {run.outcome}")
        for signal in {signal for _before, signal, _after in machine.trail}:
            event(f"signal {signal}")


def _network_step(
    hq: ModelHQ,
    faults: Faults,
    data: st.DataObject,
    machine: UploadMachine,
    on_the_way: list[tuple[int, list[Entry]]],
    answers: list[tuple[int, tuple[int, dict[str, Any]] | None]],
    actions: deque[Action],
    run: Run,
) -> None:
    """Hypothesis picks what happens next on the network (or at HQ)."""
    choices = [("hq", i) for i in range(len(on_the_way))]
    choices += [("till", i) for i in range(len(answers))]
    assert choices, f"the machine waits for nothing in {machine.state}"
    if faults.backups:
        choices.append(("backup", 0))
    if faults.rival:
        choices.append(("rival", 0))
    what, index = data.draw(st.sampled_from(choices))
    if what == "hq":
        number, batch = on_the_way.pop(index)
        lost = faults.drops > 0 and data.draw(st.booleans())
        faults.drops -= lost
        # A request lost on the way never reaches HQ; else HQ answers it.
        answers.append((number, None if lost else hq.upload(batch)))
    elif what == "till":
        number, reply = answers.pop(index)
        if reply is not None and faults.drops > 0 and data.draw(st.booleans()):
            faults.drops, reply = faults.drops - 1, None  # HQ stored it; the answer is lost
        if reply is None:
            answer = Lost(unreachable("HQ not reached after retries"))
            actions.extend(machine.answered(number, answer))
        else:
            status, body = reply
            actions.extend(machine.answered(number, read_answer(status, body, HQ_KEY.public_key())))
    elif what == "backup":
        faults.backups -= 1
        run.backups += 1
        hq.restore_backup(data.draw(st.integers(0, max(hq.entries, default=0))))
    else:
        hq.upload(faults.rival)  # accepted or refused: HQ decides, as for the till
        faults.rival = []


# Entries per batch, and batches on the wire at once (the till's are 500 and 2).
PIPES = st.tuples(st.integers(1, 7), st.integers(1, 3))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    size=st.integers(0, 30),
    held=st.integers(0, 12),
    pipe=PIPES,
    drops=st.integers(0, 4),
    backups=st.integers(0, 2),
)
def test_hq_ends_with_exactly_the_journal(
    data: st.DataObject,
    size: int,
    held: int,
    pipe: tuple[int, int],
    drops: int,
    backups: int,
) -> None:
    """Whatever the network does, runs end (each within its bound), stall only
    when HQ lost entries under them, fail only when an answer was lost, and once
    the faults are spent HQ holds each entry of the journal once, in order."""
    journal = JOURNAL[:size]
    hq = ModelHQ(journal[: min(held, size)])
    faults = Faults(drops, backups)
    runs = []
    for _ in range(drops + backups + 2):
        run = _one_run(hq, journal, faults, data, *pipe)
        runs.append(run)
        if run.outcome == "stalled":
            assert run.backups, "stalled with an HQ that lost nothing"
        else:
            assert run.outcome in ("done", "hq_unreachable"), run
        if run.outcome == "done" and not run.backups:
            break
    assert runs[-1].outcome == "done" and not runs[-1].backups, runs
    assert list(hq.entries) == sorted(hq.entries)
    assert [entry.hash for entry in hq.entries.values()] == [entry.hash for entry in journal]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    hole=st.integers(1, 19),
    held=st.integers(0, 19),
    pipe=PIPES,
    drops=st.integers(0, 3),
)
def test_a_journal_with_a_hole_stops_at_it(
    data: st.DataObject, hole: int, held: int, pipe: tuple[int, int], drops: int
) -> None:
    """Entry ``hole`` is missing (the shell's journal check stops that before
    uploading; the machine must end on its own too): HQ takes what comes
    before it (as far as it got), nothing after, and every run ends, refused or
    stalled."""
    journal = [entry for entry in JOURNAL[:20] if entry.seq != hole]
    hq = ModelHQ(JOURNAL[: min(held, hole - 1)])
    faults = Faults(drops, 0)
    for _ in range(drops + 1):
        run = _one_run(hq, journal, faults, data, *pipe)
        assert run.outcome in ("sequence_gap", "stalled", "hq_unreachable"), run
    faults.drops = 0
    run = _one_run(hq, journal, faults, data, *pipe)
    assert run.outcome in ("sequence_gap", "stalled"), run
    assert sorted(hq.entries) == list(range(1, len(hq.entries) + 1))
    assert len(hq.entries) < hole  # nothing past the hole
    assert [hq.entries[s].hash for s in hq.entries] == [e.hash for e in JOURNAL[: len(hq.entries)]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    common=st.integers(0, 12),
    size=st.integers(13, 25),
    rival=st.integers(1, 6),
    held=st.integers(0, 12),
    pipe=PIPES,
    drops=st.integers(0, 2),
)
def test_a_clone_uploading_another_history_stops_the_till(
    data: st.DataObject,
    common: int,
    size: int,
    rival: int,
    held: int,
    pipe: tuple[int, int],
    drops: int,
) -> None:
    """A clone shares the first ``common`` entries and uploads its own after
    them while the till's runs go on. HQ ends with one history, never a mix;
    the till either got its whole journal in first or stops with ``fork`` (HQ
    refused its batch) or ``restored_from_backup`` (HQ's head is not its
    entry) instead of sending for ever."""
    journal = JOURNAL[:size]
    prev = journal[common - 1].hash if common else GENESIS_PREV
    clone = _chain(rival, common + 1, prev, tag="C")
    hq = ModelHQ(journal[: min(held, common)])
    faults = Faults(drops, 0, clone)
    for _ in range(drops + 2):
        run = _one_run(hq, journal, faults, data, *pipe)
        assert run.outcome in ("done", "fork", "restored_from_backup", "hq_unreachable"), run
        if run.outcome != "hq_unreachable":
            break
    held_hashes = [hq.entries[s].hash for s in sorted(hq.entries)]
    mine = [entry.hash for entry in journal[: len(held_hashes)]]
    theirs = [entry.hash for entry in [*journal[:common], *clone][: len(held_hashes)]]
    assert held_hashes in (mine, theirs)
    if run.outcome == "done":
        assert held_hashes == [entry.hash for entry in journal]
    elif run.outcome in ("fork", "restored_from_backup"):
        assert held_hashes == theirs and len(held_hashes) > common
