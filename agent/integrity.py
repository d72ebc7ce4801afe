"""The journal check the agent (at start) and ``tillpoints sync`` (before it
uploads) run before they trust the ledger file.

``log verify`` walks the whole journal: every signature, then the balances. This
check is bounded by what HQ does not hold yet: it walks from the entry HQ last
acknowledged (or from the first entry, if HQ has acknowledged none) to the end
with ``agent.chain.walk_chain`` (sequence, links and hashes of every entry, the
signature at the end of each key's run, rotations followed), then compares:

- the walked entry at the acknowledged sequence with the hash HQ acknowledged,
- the walk's end with the recorded head (``meta.head``), so a cut tail is caught,
- the key in force at the end with the device key on record.

Each body is hashed as stored, the very bytes the till signed; only a body that
does not give its entry's hash is decoded and judged by its canonical encoding
(``_as_decoded``), so a good journal is never decoded here.

What HQ acknowledged is HQ's to keep: a damaged synced entry is ``log verify``'s
and ``hq verify``'s to find. Reads only; the caller decides what a failure means.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.chain import (
    GENESIS_PREV,
    HASH_MISMATCH,
    ChainReport,
    Entry,
    Walk,
    canonical,
    canonical_digest,
    stored_digest,
    walk_chain,
)
from agent.entries import Kind
from agent.errors import VerificationFailed
from agent.journal import Journal, Row
from agent.keys import device_id_for, load_public_key, public_key_text


class JournalDamaged(VerificationFailed):
    """Writes refused because the journal did not verify (exit 4; the local API
    answers 503: the till cannot record until the ledger is repaired)."""

    http_status = 503


CHUNK = 1000  # entries walked at a time


def check_unsynced(conn: sqlite3.Connection) -> ChainReport:
    """Verify the journal from HQ's acknowledged entry to the recorded head."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    synced = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
    device = str(meta.get("device_id") or "")
    journal = Journal(conn, device)
    recorded = journal.recorded_head()
    acked = int(synced.get("acked_seq") or 0)
    end = journal.head()[0]
    if end == 0:
        return _broken(0, "", 1, "the journal is empty")
    if acked > end:
        return _broken(
            end,
            "",
            end + 1,
            f"the journal ends at {end}, before entry {acked} that HQ acknowledged "
            "(truncated, or restored from a backup)",
        )
    start = max(acked, 1)
    key = _key_for(journal, start)
    if key is None or (start == 1 and device_id_for(key) != device):
        return _broken(start - 1, "", start, f"no valid device key on record for entry {start}")
    row = journal.row_at(start)
    prev = GENESIS_PREV if start == 1 or row is None else str(row[5])
    rows = journal.rows_from(start)
    report, count = ChainReport(True, 0, prev, start - 1), 0
    while chunk := list(islice(rows, CHUNK)):  # bounded memory, however long the walk
        try:
            entries = [_stored(device, row) for row in chunk]
            walk = _walk(entries, key, device, report, _as_stored)
            if walk.report.reason == HASH_MISMATCH:  # judge by the canonical encoding
                walk = _walk(entries, key, device, report, _as_decoded)
        except _NotAnObject as error:
            return _broken(error.seq - 1, "", error.seq, "the entry's body is not a JSON object")
        report, key = walk.report, walk.key
        if not report.ok:
            return report
        count += report.entries
    report, in_force = ChainReport(True, count, report.head, report.head_seq), key
    if acked and row is not None and str(row[6]) != synced.get("acked_hash", row[6]):
        return _broken(acked - 1, "", acked, "the entry differs from the one HQ acknowledged")
    if recorded != f"{report.head_seq}:{report.head}":
        seq = recorded.split(":")[0]
        truncated = seq.isdigit() and int(seq) > report.head_seq
        return _broken(
            report.head_seq,
            report.head,
            report.head_seq + 1 if truncated else report.head_seq,
            f"the journal ends at {report.head_seq}, before its recorded head {seq} (truncated)"
            if truncated
            else "the journal's last entry is not the recorded head",
        )
    if public_key_text(in_force) != meta.get("public_key"):
        return _broken(
            report.head_seq,
            report.head,
            report.head_seq,
            "the device key on record is not the one the journal hands over to",
        )
    return report


@dataclass(frozen=True)
class _Stored(Entry):
    """A journal row as an entry: ``raw`` is its body as stored, the canonical
    bytes it was signed over unless damaged. ``body`` is decoded only where the
    walk reads it (a ``key_rotate`` entry's new key) or the raw bytes fail."""

    raw: bytes = b""


class _NotAnObject(Exception):
    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


def _stored(device: str, row: Row) -> _Stored:
    seq, kind, raw = row[0], row[2], row[4]
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes):
        raise _NotAnObject(seq)
    body = _decode(seq, raw) if kind == Kind.KEY_ROTATE else {}
    return _Stored(device, seq, row[1], kind, row[3], body, row[5], row[6], row[7], raw)


def _walk(
    entries: list[_Stored],
    key: Ed25519PublicKey,
    device: str,
    after: ChainReport,
    encode: Callable[[Entry], tuple[bytes, bytes]],
) -> Walk:
    return walk_chain(
        entries,
        key,
        signatures="run_ends",
        rotations=True,
        device=device,
        start_seq=after.head_seq + 1,
        start_prev=after.head,
        encode=encode,
    )


def _as_stored(entry: Entry) -> tuple[bytes, bytes]:
    """The digest over the body as stored. The till stores the very bytes it
    signed (``agent.ledger``), so a good journal is never decoded here."""
    raw = entry.raw if isinstance(entry, _Stored) else canonical(entry.body)
    return stored_digest(entry, raw), raw


def _as_decoded(entry: Entry) -> tuple[bytes, bytes]:
    """The digest over the canonical encoding of the stored body's value, as HQ
    judges what it is sent: for a chunk whose stored bytes missed a hash."""
    if isinstance(entry, _Stored):
        entry = dataclasses.replace(entry, body=_decode(entry.seq, entry.raw))
    return canonical_digest(entry)


def _decode(seq: int, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8
        raise _NotAnObject(seq) from None
    if not isinstance(body, dict):
        raise _NotAnObject(seq)
    return body


def _key_for(journal: Journal, seq: int) -> Any:
    """The key that signs entry ``seq``: the one the newest ``init`` or
    ``key_rotate`` entry before it names (entry 1 names its own)."""
    body = journal.key_announcement_before(max(seq, 2))
    try:
        return load_public_key(str(json.loads(body)["public_key"])) if body is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _broken(head_seq: int, head: str, first_bad: int, reason: str) -> ChainReport:
    return ChainReport(False, 0, head, head_seq, first_bad, reason)
