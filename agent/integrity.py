"""The journal check the agent (at start) and ``tillpoints sync`` (before it
uploads) run before they trust the ledger file.

``log verify`` walks the whole journal: every signature, then the balances. This
check is bounded by what HQ does not hold yet: it walks from the entry HQ last
acknowledged (or from the first entry, if HQ has acknowledged none) to the end
with ``sync.chain.walk_chain`` (sequence, links and hashes of every entry, the
signature at the end of each key's run, rotations followed), then compares:

- the walked entry at the acknowledged sequence with the hash HQ acknowledged,
- the walk's end with the recorded head (``meta.head``), so a cut tail is caught,
- the key in force at the end with the device key on record.

What HQ acknowledged is HQ's to keep: a damaged synced entry is ``log verify``'s
and ``hq verify``'s to find. Reads only; the caller decides what a failure means.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.errors import VerificationFailed
from sync.chain import GENESIS_PREV, ChainReport, Entry, walk_chain
from sync.keys import device_id_for, load_public_key, public_key_text


class JournalDamaged(VerificationFailed):
    """Writes refused because the journal did not verify (exit 4; the local API
    answers 503: the till cannot record until the ledger is repaired)."""

    http_status = 503


CHUNK = 1000  # entries walked at a time
ENTRY_COLUMNS = "SELECT seq, ts, kind, staff, body, prev_hash, hash, sig FROM journal"


def entry_from_row(device: str, row: tuple[Any, ...]) -> Entry:
    """A journal row (``ENTRY_COLUMNS``) as the entry it stores."""
    return Entry(
        device=device,
        seq=row[0],
        ts=row[1],
        kind=row[2],
        staff=row[3],
        body=json.loads(row[4]),
        prev=row[5],
        hash=row[6],
        sig=row[7],
    )


def check_unsynced(conn: sqlite3.Connection) -> ChainReport:
    """Verify the journal from HQ's acknowledged entry to the recorded head."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    synced = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
    device, recorded = str(meta.get("device_id") or ""), str(meta.get("head") or "0:")
    acked = int(synced.get("acked_seq") or 0)
    end = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0])
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
    key = _key_for(conn, start)
    if key is None or (start == 1 and device_id_for(key) != device):
        return _broken(start - 1, "", start, f"no valid device key on record for entry {start}")
    row = conn.execute("SELECT prev_hash, hash FROM journal WHERE seq = ?", (start,)).fetchone()
    prev = GENESIS_PREV if start == 1 or row is None else str(row[0])
    rows = conn.execute(f"{ENTRY_COLUMNS} WHERE seq >= ? ORDER BY seq", (start,))
    report, count = ChainReport(True, 0, prev, start - 1), 0
    while chunk := rows.fetchmany(CHUNK):  # bounded memory, however long the walk
        entries = _entries(device, chunk)
        if isinstance(entries, ChainReport):
            return entries
        walk = walk_chain(
            entries,
            key,
            signatures="run_ends",
            rotations=True,
            device=device,
            start_seq=report.head_seq + 1,
            start_prev=report.head,
        )
        report, key = walk.report, walk.key
        if not report.ok:
            return report
        count += report.entries
    report, in_force = ChainReport(True, count, report.head, report.head_seq), key
    if acked and row is not None and str(row[1]) != synced.get("acked_hash", row[1]):
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


def _entries(device: str, rows: list[Any]) -> list[Entry] | ChainReport:
    entries: list[Entry] = []
    for row in rows:
        try:
            entry: Entry | None = entry_from_row(device, row)
        except ValueError:  # a body that is not JSON any more
            entry = None
        if entry is None or not isinstance(entry.body, dict):
            return _broken(row[0] - 1, "", row[0], "the entry's body is not a JSON object")
        entries.append(entry)
    return entries


def _key_for(conn: sqlite3.Connection, seq: int) -> Any:
    """The key that signs entry ``seq``: the one the newest ``init`` or
    ``key_rotate`` entry before it names (entry 1 names its own)."""
    row = conn.execute(
        "SELECT body FROM journal WHERE kind IN ('init', 'key_rotate') AND seq < ? "
        "ORDER BY seq DESC LIMIT 1",
        (max(seq, 2),),
    ).fetchone()
    try:
        return load_public_key(str(json.loads(row[0])["public_key"])) if row else None
    except (KeyError, TypeError, ValueError):
        return None


def _broken(head_seq: int, head: str, first_bad: int, reason: str) -> ChainReport:
    return ChainReport(False, 0, head, head_seq, first_bad, reason)
