"""The till's upload session as a pure state machine: events in, actions out.

After h11: no sockets, threads, SQL or clocks here. The shell
(``sync.till_sync._upload``) reads batches from the journal, sends them, waits
for HQ's answers and records heads; it tells the machine what happened and does
what the machine answers, in order:

    machine = UploadMachine(window=2)
    actions = machine.begin(acked, total)    # HQ's head is known
    Read(start)     -> machine.read(first, last) | machine.journal_end()
    Send(n, ...)    -> later machine.answered(n, read_answer(status, body, key))
                       or machine.answered(n, Lost(error)) when the client gave up
    Accept(head)    -> record HQ's head (checked against the journal: a fork stops the run)
    Done | Fail | Stall -> the session ends

Why a machine: pipelining (``window`` batches on the wire), answers that arrive
out of order, resuming where HQ says it is (``expected_seq``) after the batches
still on the wire are let finish, and the rule that every resume must move
HQ's head are a dozen decisions that used to sit between threads and HTTP
calls. Written down as ``TABLE`` they are checked against an in-process HQ
that drops, delays and reorders answers (``tests/test_upload_session.py``).

Answers are taken in the order the batches were read, as HQ stores them (each
upload must continue HQ's head): one that arrives early is kept until the ones
before it are answered. Whenever an answer is not the ack of its batch (HQ
wants another start, or acknowledged another head), the batches still on the
wire are let finish, their answers are dropped, and sending resumes after HQ's
head. A resume must move HQ's head past where the last one started: otherwise
the session is ``STALLED`` (the shell ends the run, ``sync_stalled``), so no
HQ, honest or not, makes it send for ever: between two resumes the batches go
forward through the journal, and a resume after its end finishes the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sync.errors import SyncError, unverified
from sync.protocol import ACK_TAG, HEAD_TAG, Ack, open_signed
from sync.till_register import error_from


class State(StrEnum):
    START = "start"  # HQ's head not known yet
    READING = "reading"  # a Read is out: waiting for the batch
    WAITING = "waiting"  # the window is full or the journal all sent: waiting for answers
    DRAINING = "draining"  # resuming after HQ's head: waiting for answers it drops
    DONE = "done"
    STALLED = "stalled"
    FAILED = "failed"


class Signal(StrEnum):
    HEAD = "head"  # HQ's head is known: the session's first event
    ROOM = "room"  # the window has room and the journal goes on
    IDLE = "idle"  # nothing on the wire, nothing left to read
    BATCH = "batch"  # a batch was read
    JOURNAL_END = "journal_end"  # nothing in the journal at the asked start
    EARLY = "early"  # the answer of a batch after the oldest on the wire
    ACK = "ack"  # the oldest batch acknowledged up to its last entry
    ACK_ELSEWHERE = "ack_elsewhere"  # acknowledged, HQ's head is elsewhere
    BEHIND = "behind"  # 409 expected_seq: HQ wants another start
    REFUSED = "refused"  # any other answer, or one that does not verify
    LOST = "lost"  # the client gave up on a send (retries spent, TLS)
    DROPPED = "dropped"  # an answer while draining
    DRAINED = "drained"  # the wire is empty and HQ's head moved: resume after it
    STUCK = "stuck"  # the wire is empty and HQ's head did not move since the last resume


TERMINAL = frozenset({State.DONE, State.STALLED, State.FAILED})

# Every legal transition; anything else is a ``sync_state`` error with a name.
TABLE: dict[tuple[State, Signal], State] = {
    (State.START, Signal.HEAD): State.WAITING,
    (State.WAITING, Signal.ROOM): State.READING,
    (State.WAITING, Signal.IDLE): State.DONE,
    (State.READING, Signal.BATCH): State.WAITING,
    (State.READING, Signal.JOURNAL_END): State.WAITING,
    (State.WAITING, Signal.EARLY): State.WAITING,
    (State.WAITING, Signal.ACK): State.WAITING,
    (State.WAITING, Signal.ACK_ELSEWHERE): State.DRAINING,
    (State.WAITING, Signal.BEHIND): State.DRAINING,
    (State.WAITING, Signal.REFUSED): State.FAILED,
    (State.WAITING, Signal.LOST): State.FAILED,
    (State.DRAINING, Signal.DROPPED): State.DRAINING,
    (State.DRAINING, Signal.DRAINED): State.WAITING,
    (State.DRAINING, Signal.STUCK): State.STALLED,
}


# -- HQ's answers, as the machine takes them -------------------------------------------


@dataclass(frozen=True)
class Acked:
    """A verified ack: HQ holds the chain up to ``head_seq``."""

    head: dict[str, Any]
    head_seq: int
    stored: int


@dataclass(frozen=True)
class Behind:
    """409 ``expected_seq`` with HQ's verified head: resend from after it."""

    head: dict[str, Any]
    head_seq: int
    expected_seq: object


@dataclass(frozen=True)
class Refused:
    """An answer that ends the run: another error, or one that does not verify."""

    error: SyncError


@dataclass(frozen=True)
class Lost:
    """No answer: the client gave up (``hq_unreachable``, ``tls_error``)."""

    error: SyncError


Answer = Acked | Behind | Refused | Lost


def read_answer(status: int, body: dict[str, Any], hq_key: Ed25519PublicKey) -> Answer:
    """HQ's answer to an upload as the machine takes it; signatures checked here,
    so that nothing unverified reaches a decision."""
    try:
        if status == 200:
            ack = Ack.from_json(open_signed(hq_key, ACK_TAG, body, "ack"))
            return Acked(ack.to_json(), ack.head_seq, ack.stored)
        if status == 409 and body.get("error") == "expected_seq":
            head = open_signed(hq_key, HEAD_TAG, body.get("head"), "head")
            try:
                seq = int(head.get("head_seq", -1))
            except (TypeError, ValueError):
                raise unverified("bad_ack", "head: head_seq is not a number") from None
            return Behind(head, seq, body.get("expected_seq"))
    except SyncError as error:
        return Refused(error)
    return Refused(error_from(status, body))


# -- what the shell is told to do ------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """Read the next batch of the journal from ``start``."""

    start: int


@dataclass(frozen=True)
class Send:
    """Send batch ``n`` (the one just read, ``first``..``last``)."""

    n: int
    first: int
    last: int


@dataclass(frozen=True)
class Accept:
    """Record HQ's head as acknowledged, once checked against this journal (a
    different hash is a fork: the run stops). ``stored`` is set for an ack."""

    head: dict[str, Any]
    stored: int | None


@dataclass(frozen=True)
class Done:
    acked: int
    uploaded: int


@dataclass(frozen=True)
class Fail:
    error: SyncError


@dataclass(frozen=True)
class Stall:
    """A resume would not move HQ's head. ``expected_seq`` is HQ's last word, or
    None when the resume followed an ack of another head."""

    expected_seq: object


Action = Read | Send | Accept | Done | Fail | Stall


# -- the machine -----------------------------------------------------------------------


@dataclass
class UploadMachine:
    """One upload session. ``window``: batches on the wire at once."""

    window: int = 2
    state: State = State.START
    acked: int = 0  # HQ's acknowledged head, as last accepted
    total: int = 0  # where the journal ends, as far as known
    start: int = 1  # the next seq to read
    uploaded: int = 0  # entries HQ stored in this session
    sent: int = 0  # batches sent so far; the next one's number
    # Batches on the wire, in the order they were read: n -> (first, last).
    wire: dict[int, tuple[int, int]] = field(default_factory=dict)
    early: dict[int, Answer] = field(default_factory=dict)  # answered before older ones
    resumed_at: int | None = None  # HQ's head when sending last resumed after it
    behind: Behind | None = None  # the expected_seq answer to act on once drained
    trail: list[tuple[State, Signal, State]] = field(default_factory=list)

    # -- events ------------------------------------------------------------------------

    def begin(self, acked: int, total: int) -> list[Action]:
        """HQ's head (checked against the journal) is ``acked``; the journal ends at ``total``."""
        self._move(Signal.HEAD)
        self.acked, self.total, self.start = acked, total, acked + 1
        return self._settle()

    def read(self, first: int, last: int) -> list[Action]:
        """The batch asked for by the last ``Read`` holds ``first``..``last``."""
        self._move(Signal.BATCH)
        if not first <= last or last < self.start:
            raise SyncError("sync_state", f"upload: a batch {first}..{last} read from {self.start}")
        number, self.sent = self.sent, self.sent + 1
        self.wire[number] = (first, last)
        self.start = last + 1
        return [Send(number, first, last), *self._settle()]

    def journal_end(self) -> list[Action]:
        """The journal holds nothing from the asked start on."""
        self._move(Signal.JOURNAL_END)
        self.total = self.start - 1
        return self._settle()

    def answered(self, number: int, answer: Answer) -> list[Action]:
        """Batch ``number`` was answered (or lost), in whatever order that happens."""
        if number not in self.wire or number in self.early:
            raise SyncError("sync_state", f"upload: batch {number} is not awaiting an answer")
        if self.state is State.DRAINING:
            self._move(Signal.DROPPED)
            del self.wire[number]
            return self._settle()
        if self.state is not State.WAITING:
            raise SyncError("sync_state", f"upload: an answer is not allowed in state {self.state}")
        if number != next(iter(self.wire)):
            self._move(Signal.EARLY)
            self.early[number] = answer
            return []
        actions: list[Action] = []
        while self.state is State.WAITING and self.wire:
            oldest = next(iter(self.wire))
            if oldest != number and oldest not in self.early:
                break
            taken = answer if oldest == number else self.early.pop(oldest)
            _first, last = self.wire.pop(oldest)
            actions += self._take(last, taken)
        return actions + self._settle()

    # -- decisions ---------------------------------------------------------------------

    def _take(self, last: int, answer: Answer) -> list[Action]:
        """The oldest batch's answer (it ended at ``last``)."""
        if isinstance(answer, Acked):
            self.acked, self.uploaded = answer.head_seq, self.uploaded + answer.stored
            self._move(Signal.ACK if answer.head_seq == last else Signal.ACK_ELSEWHERE)
            return [Accept(answer.head, answer.stored)]
        if isinstance(answer, Behind):
            self._move(Signal.BEHIND)
            self.behind = answer
            return []
        self._move(Signal.LOST if isinstance(answer, Lost) else Signal.REFUSED)
        return [Fail(answer.error)]

    def _settle(self) -> list[Action]:
        """What the state asks for once an event is taken (h11's state-triggered
        transitions): read, finish, or end a drain."""
        actions: list[Action] = []
        if self.state is State.DRAINING:
            # The answers kept for later batches no longer count.
            for number in list(self.early):
                del self.early[number], self.wire[number]
            if self.wire:
                return actions
            behind, self.behind = self.behind, None
            # A batch that raced ahead of the one before it carries a head older
            # than the ack already taken: resume after the newer one.
            if behind is not None and behind.head_seq >= self.acked:
                actions.append(Accept(behind.head, None))
                self.acked = behind.head_seq
            if self.resumed_at is not None and self.acked <= self.resumed_at:
                self._move(Signal.STUCK)
                return [*actions, Stall(None if behind is None else behind.expected_seq)]
            self._move(Signal.DRAINED)
            self.resumed_at, self.start = self.acked, self.acked + 1
        if self.state is State.WAITING:
            if not self.wire and self.start > self.total:
                self._move(Signal.IDLE)
                actions.append(Done(self.acked, self.uploaded))
            elif len(self.wire) < self.window and self.start <= self.total:
                self._move(Signal.ROOM)
                actions.append(Read(self.start))
        return actions

    def _move(self, signal: Signal) -> None:
        following = TABLE.get((self.state, signal))
        if following is None:
            raise SyncError("sync_state", f"upload: {signal} is not allowed in state {self.state}")
        self.trail.append((self.state, signal, following))
        self.state = following
