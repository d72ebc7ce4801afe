"""``tillpoints sync``: upload what HQ has not acknowledged, then download deltas.

The session is a small state table (docs/style.md): ``start -> checked`` once HQ's
signed head agrees with this till's own history; ``checked -> uploading`` per
batch; ``-> downloading`` per delta page; ``-> done``. The upload itself is a
pure state machine of its own (``sync.upload``: pipelining, resuming where HQ
says it is, the stall rule); ``_upload`` is only its I/O. Every step that changes
local state is one SQLite transaction taken *after* HQ's signed answer verified:

- the acknowledged head is recorded only from a verified ack whose hash equals
  this till's own entry at that sequence;
- a delta is applied whole or not at all, and its cursor moves with it.

So a cut connection or a killed process loses and duplicates nothing: the next
run asks HQ for its head and resumes there. If HQ holds *more* than this till,
or other hashes, the till was restored from a backup (or cloned): it refuses to
upload (exit 3, ``restored_from_backup``) instead of forking, and tells HQ so
(``_report_fork``: HQ raises a ``fork`` alert and freezes the device); docs/sync.md
says how to recover.

Before it talks to HQ, a run checks its own journal from the acknowledged entry
to the recorded head (``agent.integrity.check_unsynced``): a hole or a cut tail
stops it (exit 4, ``chain_broken``) instead of uploading around it. And every
resend must move HQ's head: one that does not ends the run (``sync_stalled``),
so no run can spin on the same answer.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.chain import FORMAT_VERSION
from agent.integrity import check_unsynced
from agent.keys import load_public_key
from agent.offers import apply_offers
from agent.privacy import key_text
from agent.privacy_tables import ERASED_KEY, erase_here
from agent.store import RESTORED_KEY, Store
from agent.suggestions import apply_suggestions, forget_suggestions
from sync.client import HQClient, Reply, RetryPolicy, Signer
from sync.errors import SyncError, refused, unverified
from sync.protocol import DELTA_TAG, HEAD_TAG, open_signed, utc_text
from sync.till_register import error_from, open_till, transport_key
from sync.upload import (
    Accept,
    Action,
    Fail,
    Lost,
    Read,
    Send,
    Stall,
    UploadMachine,
    read_answer,
)

BATCH_ENTRIES = 500
BATCH_BYTES = 1_000_000
Progress = Callable[[str], None]


class Step(StrEnum):
    START = "start"
    CHECKED = "checked"
    UPLOADING = "uploading"
    DOWNLOADING = "downloading"
    DONE = "done"


SESSION: dict[tuple[Step, str], Step] = {
    (Step.START, "head"): Step.CHECKED,
    (Step.CHECKED, "batch"): Step.UPLOADING,
    (Step.UPLOADING, "batch"): Step.UPLOADING,
    (Step.CHECKED, "page"): Step.DOWNLOADING,
    (Step.UPLOADING, "page"): Step.DOWNLOADING,
    (Step.DOWNLOADING, "page"): Step.DOWNLOADING,
    (Step.DOWNLOADING, "finish"): Step.DONE,
}


@dataclass
class _Session:
    store: Store
    client: HQClient
    device: str
    hq_key: Ed25519PublicKey
    progress: Progress
    batch_entries: int
    step: Step = Step.START
    uploaded: int = 0
    downloaded: int = 0
    acked_seq: int = 0

    def advance(self, event: str) -> None:
        following = SESSION.get((self.step, event))
        if following is None:
            raise SyncError("sync_state", f"sync: {event} is not allowed after {self.step}")
        self.step = following


def sync_till(
    state_dir: Path,
    hq_url: str | None = None,
    ca: Path | None = None,
    progress: Progress = lambda line: None,
    policy: RetryPolicy | None = None,
    batch_entries: int = BATCH_ENTRIES,
) -> dict[str, Any]:
    store = open_till(state_dir)
    try:
        device, pinned = store.meta("device_id"), store.meta("hq_public_key")
        url = hq_url or store.meta("hq_url")
        remembered = store.meta("hq_ca")
        ca = ca or (Path(remembered) if remembered else None)
        if not device or not pinned or not url:
            raise refused("not_registered", "run `tillpoints register --hq URL --token T` first")
        client = HQClient(
            url, ca=ca, signer=Signer(device, transport_key(state_dir)), policy=policy
        )
        session = _Session(store, client, device, load_public_key(pinned), progress, batch_entries)
        try:
            _check_journal(session.store)
            _check_head(session)
            _upload(session)
            _download(session)
        finally:
            client.close()
        return {
            "uploaded": session.uploaded,
            "acked_seq": session.acked_seq,
            "downloaded": session.downloaded,
        }
    finally:
        store.close()


# -- the journal, as this till holds it ---------------------------------------------


def _local_head(store: Store) -> int:
    return store.journal().head()[0]


def _local_hash(store: Store, seq: int) -> str | None:
    return store.journal().hash_at(seq)


@dataclass(frozen=True)
class _Upload:
    """One batch as it goes on the wire: ``{"device", "entries"}`` JSON, UTF-8."""

    first_seq: int
    last_seq: int
    body: bytes


def _read_batch(store: Store, device: str, start: int, limit: int) -> _Upload | None:
    """The next batch from ``start``, at most ``limit`` entries / ~BATCH_BYTES.

    Each entry's ``body`` goes out as the journal holds it: the canonical JSON
    its hash was computed over, spliced in as text rather than decoded and
    re-encoded (a third of the till's work in a long catch-up). HQ decodes it and
    checks the hash over its own canonical encoding, so nothing is trusted."""
    rows = store.journal().rows_from(start, limit)
    items: list[str] = []
    enrolled: list[str] = []
    size, first, last = 0, 0, 0
    for seq, ts, kind, staff, body, prev, digest, sig in rows:
        size += len(body) + 400
        if items and size > BATCH_BYTES:
            break
        items.append(entry_text(device, seq, ts, kind, staff, body, prev, digest, sig))
        first, last = first or seq, seq
        if kind == "enrol":
            enrolled.append(str(json.loads(body)["member"]["member_id"]))
    if not items:
        return None
    # The keys of the batch's sealed enrolments travel beside it (agent.privacy).
    keys = {member: key_text(key) for member, key in store.member_keys(enrolled).items()}
    return _Upload(first, last, batch_text(device, items, keys))


def entry_text(
    device: str,
    seq: int,
    ts: str,
    kind: str,
    staff: str | None,
    body: str,
    prev: str,
    digest: str,
    sig: str,
) -> str:
    """One entry of an upload, ``body`` being the canonical JSON the journal holds."""
    fields = {
        "v": FORMAT_VERSION,
        "device": device,
        "seq": seq,
        "ts": ts,
        "kind": kind,
        "staff": staff,
        "prev": prev,
        "hash": digest,
        "sig": sig,
    }
    return f'{_dumps(fields)[:-1]},"body":{body}}}'


def batch_text(device: str, items: list[str], member_keys: dict[str, str]) -> bytes:
    """An upload's body from its entries' ``entry_text``: what ``POST .../batches`` takes."""
    extra = f',"member_keys":{_dumps(member_keys)}' if member_keys else ""
    return f'{{"device":{_dumps(device)},"entries":[{",".join(items)}]{extra}}}'.encode()


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _set_state(conn: sqlite3.Connection, **values: object) -> None:
    conn.executemany(
        "INSERT INTO sync_state (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(key, str(value)) for key, value in values.items()],
    )


def _report_fork(session: _Session, seq: int, message: str) -> SyncError:
    """This journal and HQ's signed head are two histories of one device: tell HQ
    (which freezes the device and raises a ``fork`` alert, as when it sees a fork
    in an upload), then refuse. The report is signed like every request, with the
    transport key, and says only where this journal stands: its entry ``seq``
    (its own head, or the one at HQ's head) and its head. HQ checks it against
    the entries it holds."""
    # Remembered first, whatever HQ answers: every write is refused from now on
    # (agent.ledger.restored_refusal), since nothing recorded here could be uploaded.
    with session.store.transaction() as conn:
        conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            (RESTORED_KEY, utc_text(dt.datetime.now(dt.UTC))),
        )
    report = {
        "device": session.device,
        "seq": seq,
        "hash": _local_hash(session.store, seq),
        "head_seq": _local_head(session.store),
    }
    try:
        reply = session.client.post(f"/v1/devices/{session.device}/fork", report)
        told = reply.status == 200
        why = "" if told else f" ({reply.body.get('error')})"
    except SyncError as error:
        told, why = False, f" ({error.code})"
    return refused(
        "restored_from_backup",
        f"{message}. This till's journal is behind or different from what HQ holds: it "
        "was restored from a backup or cloned. Nothing was uploaded. "
        + (
            "HQ was told: it raised a fork alert and froze the device. "
            if told
            else f"HQ could not be told{why}; the next run tries again. "
        )
        + "This till now refuses to record anything. Recover by moving the state "
        "directory aside, `tillpoints init` and `register` as a new chain with a fresh "
        "token (docs/sync.md, 'A till restored from backup').",
        fork_reported=told,
    )


# -- the session --------------------------------------------------------------------


def _check_journal(store: Store) -> None:
    """Refuse to upload around a hole, an edit or a cut tail of the unsynced part."""
    with store.snapshot() as conn:
        report = check_unsynced(conn)
    if not report.ok:
        raise unverified(
            "chain_broken",
            f"the journal does not verify at entry {report.first_bad_seq}: {report.reason}. "
            "Nothing was uploaded; run `tillpoints log verify`",
            first_bad_seq=report.first_bad_seq,
            reason=report.reason,
        )


def _check_head(session: _Session) -> None:
    reply = session.client.get(f"/v1/devices/{session.device}/head")
    if reply.status != 200:
        raise error_from(reply.status, reply.body)
    _accept_head(session, open_signed(session.hq_key, HEAD_TAG, reply.body, "head"))
    session.advance("head")


def _accept_head(session: _Session, head: dict[str, Any]) -> None:
    """Check HQ's signed head against this journal; record it as acknowledged."""
    if head.get("device") != session.device:
        raise unverified("bad_ack", "HQ's head names another device")
    seq, digest = int(head.get("head_seq", -1)), str(head.get("head_hash"))
    local = _local_head(session.store)
    if seq > local:
        raise _report_fork(
            session, local, f"HQ holds entries up to {seq}, this journal only up to {local}"
        )
    if seq > 0 and _local_hash(session.store, seq) != digest:
        raise _report_fork(session, seq, f"HQ's entry {seq} differs from this journal's")
    with session.store.transaction() as conn:
        _set_state(conn, acked_seq=seq, acked_hash=digest)
    session.acked_seq = seq


# Batches on the wire at once. While HQ stores one, the next is already read,
# encoded and on its way, and HQ decodes it meanwhile: a long catch-up keeps the
# till, the network and HQ busy together. HQ still stores them in order: each
# upload takes the device's row lock and must continue HQ's head.
IN_FLIGHT = 2


class _Senders:
    """Up to IN_FLIGHT uploads at once, each thread with its own HTTP session."""

    def __init__(self, client: HQClient) -> None:
        self.client, self.local = client, threading.local()
        self.clients: list[HQClient] = []
        self.pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="upload")

    def send(self, target: str, batch: _Upload) -> Future[Reply]:
        return self.pool.submit(self._send, target, batch)

    def _send(self, target: str, batch: _Upload) -> Reply:
        client: HQClient | None = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.client.twin()
            self.clients.append(client)
        return client.post_json(target, batch.body, compress=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)  # an answer nobody waits for is still awaited
        for client in self.clients:
            client.close()


def _upload(session: _Session) -> None:
    """The I/O around the upload machine (``sync.upload``): read the batches it
    asks for, send them (IN_FLIGHT at once, ``_Senders``), hand it each answer
    as it arrives and do what it says. The decisions (pipelining, answers out of
    order, resuming after ``expected_seq``, draining, the stall rule) are the
    machine's; a failed send or a refusal ends the run once the batches still on
    the wire are answered (``_Senders.close``)."""
    store, total = session.store, _local_head(session.store)
    target = f"/v1/devices/{session.device}/batches"
    machine = UploadMachine(window=IN_FLIGHT)
    senders = _Senders(session.client)
    wire: dict[Future[Reply], int] = {}
    unsent: dict[int, _Upload] = {}  # read, by first seq, until the machine sends it
    try:
        actions = deque(machine.begin(session.acked_seq, total))
        while True:
            while not actions:  # an answer that came early asks for nothing yet
                actions.extend(_next_answer(machine, wire, session.hq_key))
            action = actions.popleft()
            if isinstance(action, Read):
                batch = _read_batch(store, session.device, action.start, session.batch_entries)
                if batch is None:
                    actions.extend(machine.journal_end())
                else:
                    unsent[batch.first_seq] = batch
                    actions.extend(machine.read(batch.first_seq, batch.last_seq))
            elif isinstance(action, Send):
                wire[senders.send(target, unsent.pop(action.first))] = action.n
            elif isinstance(action, Accept):
                _accept_head(session, action.head)
                if action.stored is not None:
                    session.uploaded += action.stored
                    session.advance("batch")
                    session.progress(f"sync: uploaded {session.acked_seq}/{total} entries")
            elif isinstance(action, Fail):
                raise action.error
            elif isinstance(action, Stall):
                raise _stalled(session, action)
            else:  # Done
                return
    finally:
        senders.close()


def _next_answer(
    machine: UploadMachine, wire: dict[Future[Reply], int], hq_key: Ed25519PublicKey
) -> list[Action]:
    """Wait for an answer and give it to the machine: the oldest batch's among
    those already in, whatever order they came back in."""
    if not wire:
        raise SyncError("sync_state", f"sync: the upload waits for nothing in {machine.state}")
    arrived, _ = wait(wire, return_when=FIRST_COMPLETED)
    sent = min(arrived, key=wire.__getitem__)
    number = wire.pop(sent)
    try:
        reply = sent.result()
    except SyncError as error:
        return machine.answered(number, Lost(error))
    return machine.answered(number, read_answer(reply.status, reply.body, hq_key))


def _stalled(session: _Session, stall: Stall) -> SyncError:
    """A resend did not move HQ's head: stop rather than send the same again.
    A journal that changed under the run is named as such (exit 4)."""
    _check_journal(session.store)
    said = (
        f"an ack at {session.acked_seq}"
        if stall.expected_seq is None
        else f"expected_seq {stall.expected_seq}"
    )
    return SyncError(
        "sync_stalled",
        f"HQ answered {said} again after a resend from {session.acked_seq + 1}: its head "
        "did not move, so the run stops here. Nothing is lost; the next run starts from "
        "HQ's head",
    )


def _download(session: _Session) -> None:
    while True:
        cursor = int(session.store.sync_state("cursor") or 0)
        reply = session.client.get(f"/v1/devices/{session.device}/delta?cursor={cursor}")
        if reply.status != 200:
            raise error_from(reply.status, reply.body)
        delta = open_signed(session.hq_key, DELTA_TAG, reply.body, "delta")
        if delta.get("device") != session.device or delta.get("cursor_from") != cursor:
            raise unverified("bad_delta", "HQ's delta is for another till or cursor")
        try:
            with session.store.transaction() as conn:
                session.downloaded += apply_delta(conn, delta)
        except (KeyError, TypeError, ValueError, sqlite3.IntegrityError) as error:
            raise unverified("bad_delta", f"HQ's delta cannot be applied: {error}") from None
        if delta.get(ERASED_KEY):
            # The erased pages must not live on in the WAL (secure_delete did the file).
            session.store.checkpoint()
        session.advance("page")
        session.progress(f"sync: downloaded up to cursor {delta.get('cursor')}")
        if not delta.get("more"):
            break
    session.advance("finish")


def apply_delta(conn: sqlite3.Connection, delta: dict[str, Any]) -> int:
    """Apply one verified delta inside the caller's transaction; count its items."""
    members, cards = delta.get("members") or [], delta.get("cards") or []
    balances = delta.get("balances") or []
    conn.executemany(
        # No phone_last4, whatever HQ sends (an HQ before issue 12 sent it).
        "INSERT OR REPLACE INTO hq_members (member_id, name, phone_key, "
        "birthday_month, enrolled_store) VALUES (:member_id, :name, :phone_key, "
        ":birthday_month, :enrolled_store)",
        members,
    )
    conn.executemany(
        "INSERT OR REPLACE INTO hq_cards (card, member_id, state) "
        "VALUES (:card, :member_id, :state)",
        cards,
    )
    included, as_of = int(delta["included_seq"]), str(delta["hq_time"])
    conn.executemany(
        "INSERT OR REPLACE INTO hq_balances (member_id, balance, as_of, included_seq) "
        "VALUES (?, ?, ?, ?)",
        [(item["member_id"], int(item["balance"]), as_of, included) for item in balances],
    )
    # HQ's erase instructions (issue 17): this till destroys its copy.
    erased = delta.get(ERASED_KEY) or []
    erase_here(conn, [str(member) for member in erased], as_of)
    forget_suggestions(conn, [str(member) for member in erased])
    rules = delta.get("rules") or {}
    if "text" in rules:
        conn.execute("INSERT OR REPLACE INTO hq_rules VALUES ('text', ?)", (str(rules["text"]),))
    _set_state(conn, cursor=int(delta["cursor"]), last_download=as_of)
    applied = apply_offers(conn, delta) + apply_suggestions(conn, delta)
    return len(members) + len(cards) + len(balances) + len(erased) + applied
