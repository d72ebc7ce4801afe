"""Store an uploaded batch exactly once: one transaction, one row lock, one verdict.

Inside one write transaction HQ locks the device's head row, reads the hashes it
holds where the batch overlaps, lets ``sync.hq.judge`` decide, and for an accepted
batch inserts the new entries (``Tx.copy``: COPY on PostgreSQL; ``PRIMARY KEY
(device, seq)`` is the backstop should two workers ever race past the lock),
moves the head (one write of the device's row), and numbers the
batch from ``batch_clock``. The clock row is updated *last*, so it is held only
for the end of the transaction, and batch numbers are handed out in commit order:
a reader who sees batch ``n`` sees every batch before it (the download cursor
depends on that).

A rejected batch rolls back whole; the alert (and, for a fork, the freeze) is
written afterwards in its own transaction, so nothing of the batch is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.chain import Entry, canonical, typed_digest
from agent.entries import Earn, Enrol
from agent.keys import load_public_key, public_key_text
from sync.errors import SyncError, refused, unverified
from sync.hq import plausible as hq_plausible
from sync.hq.db import HQStore, Tx, next_batch_no
from sync.hq.devices import freeze, raise_alert
from sync.hq.extract import Facts, facts_of, facts_of_body
from sync.hq.judge import Head, Verdict, judge, overlap_range
from sync.hq.member_keys import take_keys
from sync.protocol import ACK_TAG, HEAD_TAG, Ack, Batch, signed, utc_text
from sync.registration import Event, State, transition

CLOCK_SKEW = dt.timedelta(minutes=5)

# The columns of ``entries`` an uploaded entry fills, in ``entry_row``'s order.
ENTRY_COLUMNS = (
    "device",
    "seq",
    "ts",
    "kind",
    "staff",
    "body",
    "prev",
    "hash",
    "sig",
    "account",
    "delta",
    "expired",
    "amount",
    "card",
    "member_id",
    "phone_key",
    "visit",
)


class _Rejected(Exception):
    """Carries a verdict out of the transaction so that it rolls back."""

    def __init__(self, verdict: Verdict, head: Head) -> None:
        super().__init__(verdict.reason)
        self.verdict, self.head = verdict, head


def ingest(
    store: HQStore,
    key: Ed25519PrivateKey,
    device: str,
    batch: Batch,
    now: dt.datetime,
    till_clock: dt.datetime,
) -> dict[str, Any]:
    """Store ``batch`` for the authenticated ``device``; return HQ's signed ack."""
    if batch.device != device:
        _alert(store, "tampered_upload", device, {"reason": "batch of another device"}, now)
        raise unverified("device_mismatch", f"batch names device {batch.device!r}, not yours")
    try:
        with store.write() as tx:
            ack = _ingest(tx, device, batch, now, till_clock)
    except _Rejected as rejected:
        raise _refusal(store, key, device, rejected, now) from None
    return signed(key, ACK_TAG, ack.to_json())


def _ingest(tx: Tx, device: str, batch: Batch, now: dt.datetime, till_clock: dt.datetime) -> Ack:
    # The device's row is read once and written once per batch: a night of a
    # thousand tills is a few batches each, and every round trip under the row
    # lock is time other batches of the chain wait on the batch clock.
    row = tx.locked(
        "SELECT state, current_key, head_seq, head_hash, public_key FROM devices WHERE device = ?",
        (device,),
    )
    if row is None:
        raise unverified("unknown_device", f"device {device!r} is not registered", http_status=401)
    transition(State(str(row[0])), Event.UPLOAD)
    current = load_public_key(str(row[1]))
    head = Head(int(row[2]), str(row[3]), current)
    span = overlap_range(batch.entries, head.seq)
    stored: dict[int, str] = {}
    if span is not None:
        stored = {
            int(seq): str(digest)
            for seq, digest in tx.all(
                "SELECT seq, hash FROM entries WHERE device = ? AND seq BETWEEN ? AND ?",
                (device, span[0], span[1]),
            )
        }
    registered = row[4]
    keys = (
        (current,)
        if registered is None or registered == row[1]
        else (load_public_key(str(registered)), current)
    )
    rows: list[tuple[Any, ...]] = []
    lines: list[int] = []  # each entry's number of receipt lines (plausibility)
    enrolments: dict[int, Enrol] = {}  # by position: their seals are opened (take_keys)

    def encode(entry: Entry) -> tuple[bytes, bytes]:
        # Each new body is read once, for its hash and for HQ's columns, and its row
        # made there: no typed body or facts stay alive for the batch (the
        # collector ran a full pass in a bench batch when they did).
        digest, body, typed = typed_digest(entry)
        if type(typed) is Earn:  # most of what tills send: its row in one step
            rows.append(earn_row(entry, body, typed))
            lines.append(len(typed.lines))
        else:
            if isinstance(typed, Enrol):
                enrolments[len(rows)] = typed
            rows.append(entry_row(entry, body, facts_of_body(entry, typed)))
            lines.append(len(n) if isinstance(n := entry.body.get("lines"), list) else 0)
        return digest, body

    verdict = judge(device, batch.entries, head, stored, keys, encode)
    if verdict.outcome != "accept":
        raise _Rejected(verdict, head)
    fresh = verdict.new_entries
    if not fresh:
        return Ack(device, head.seq, head.hash, 0, utc_text(now))
    # The walk encoded every new entry, in order, and nothing else (all were good).
    assert len(rows) == len(fresh)
    # The keys of sealed enrolments, kept outside the journal (sync.hq.member_keys).
    rows = take_keys(tx, device, fresh, rows, batch.member_keys, now, enrolments)
    tx.copy("entries", ENTRY_COLUMNS, rows)
    # Signed is not plausible: stored all the same, and alerted (sync.hq.plausible).
    for finding in hq_plausible.findings(rows, lines, hq_plausible.limits(tx)):
        dedupe = f"{hq_plausible.ALERT}:{device}:{finding.seq}"
        raise_alert(tx, hq_plausible.ALERT, device, finding.detail(), dedupe, now)
    last = fresh[-1]
    key_text = public_key_text(verdict.key) if verdict.key is not None else str(row[1])
    skew = _clock_skew(till_clock, last.ts, now)
    tx.run(
        "UPDATE devices SET head_seq = ?, head_hash = ?, current_key = ?, clock_skew_s = ? "
        "WHERE device = ?",
        (last.seq, last.hash, key_text, int(skew.total_seconds()), device),
    )
    if abs(skew) > CLOCK_SKEW:
        detail = {"skew_s": int(skew.total_seconds()), "reason": "till clock off HQ's"}
        raise_alert(tx, "clock_skew", device, detail, f"clock_skew:{device}:{now.date()}", now)
    batch_no = next_batch_no(tx)
    tx.run(
        "INSERT INTO batches (batch_no, device, first_seq, last_seq, stored_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (batch_no, device, fresh[0].seq, last.seq, utc_text(now)),
    )
    return Ack(device, last.seq, last.hash, len(fresh), utc_text(now))


def entry_row(
    entry: Entry, body: bytes | None = None, facts: Facts | None = None
) -> tuple[Any, ...]:
    """An entry as a row of ``entries``: its fields and the facts HQ aggregates.
    ``body`` is ``canonical(entry.body)`` and ``facts`` its facts when the caller
    already has them (the judge read and encoded the body to check the hash)."""
    facts = facts_of(entry) if facts is None else facts
    text = (canonical(entry.body) if body is None else body).decode("utf-8")
    # account, delta, expired, amount, card, member_id, phone_key, visit
    return _row(entry, text, *facts)


def earn_row(entry: Entry, body: bytes, earn: Earn) -> tuple[Any, ...]:
    """``entry_row(entry, body, facts_of_body(entry, earn))`` for an earn, its facts
    written inline (tests/test_hq_ingest_fast.py compares them): no member id or
    phone key (those are an enrolment's), one visit."""
    effects = earn.effects or {}
    delta, expired = effects.get("delta", 0), effects.get("expired", 0)
    return _row(
        entry,
        body.decode("utf-8"),
        earn.account,
        delta,
        expired,
        earn.amount,
        earn.card,
        None,
        None,
        1,
    )


def _row(entry: Entry, text: str, *facts: Any) -> tuple[Any, ...]:
    """The row of ``entries`` (``ENTRY_COLUMNS``): the entry, then its facts."""
    return (
        entry.device,
        entry.seq,
        entry.ts,
        entry.kind,
        entry.staff,
        text,
        entry.prev,
        entry.hash,
        entry.sig,
        *facts,
    )


def _clock_skew(till_clock: dt.datetime, newest_ts: str, now: dt.datetime) -> dt.timedelta:
    """The till's clock against HQ's: its signed request date, or its newest entry
    if that claims to be further in the future than five minutes. HQ alerts past
    ``CLOCK_SKEW`` either way."""
    skews = [till_clock - now]
    try:
        newest = dt.datetime.fromisoformat(newest_ts)
        if newest.tzinfo is not None and newest - now > CLOCK_SKEW:
            skews.append(newest - now)
    except ValueError:
        pass
    return max(skews, key=abs)


def _refusal(
    store: HQStore, key: Ed25519PrivateKey, device: str, rejected: _Rejected, now: dt.datetime
) -> SyncError:
    verdict, head = rejected.verdict, rejected.head
    detail = {"seq": verdict.bad_seq, "reason": verdict.reason, "code": verdict.code}
    if verdict.outcome == "gap":
        return refused(
            "expected_seq",
            verdict.reason,
            expected_seq=verdict.expected_seq,
            head=signed_head(key, device, head.seq, head.hash, now),
        )
    if verdict.outcome == "fork":
        freeze(store, device, "fork", detail, now)
        return refused("fork", f"{verdict.reason}; the device is frozen", seq=verdict.bad_seq)
    _alert(store, "tampered_upload", device, detail, now)
    return unverified(verdict.code, verdict.reason, seq=verdict.bad_seq)


def refused_alert(store: HQStore, device: str, error: SyncError, now: dt.datetime) -> None:
    """An upload of ``device`` refused before its entries could be read (an integer
    beyond 64 bits): the ``implausible_entry`` alert, once a day per device."""
    detail = {"seq": None, "reason": f"upload refused: {error.message}", "code": error.code}
    with store.write() as tx:
        dedupe = f"{hq_plausible.ALERT}:{device}:refused:{now.date()}"
        raise_alert(tx, hq_plausible.ALERT, device, detail, dedupe, now)


def _alert(
    store: HQStore, kind: str, device: str, detail: dict[str, Any], now: dt.datetime
) -> None:
    with store.write() as tx:
        raise_alert(tx, kind, device, detail, f"{kind}:{device}:{detail.get('seq')}", now)


def signed_head(
    key: Ed25519PrivateKey, device: str, seq: int, digest: str, now: dt.datetime
) -> dict[str, Any]:
    document = {"device": device, "head_seq": seq, "head_hash": digest, "hq_time": utc_text(now)}
    return signed(key, HEAD_TAG, document)
