"""``log verify`` and ``log export``: the journal checked end to end, and a portable
file that another machine can check with nothing but the device's public key."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.chain import ChainReport, Entry
from agent.entries import Init, readable
from agent.errors import InvalidInput, LedgerError
from agent.keys import load_public_key, public_key_text
from agent.ledger import Ledger
from agent.projection import rebuild
from agent.results import Exported
from agent.rotation import verify_rotating
from agent.store import PROJECTION_TABLES

EXPORT_FORMAT = "tillpoints-log/1"


def verify_ledger(ledger: Ledger) -> ChainReport:
    """Chain, hashes and signatures of every entry, then the recorded head (a
    truncated tail is caught there), then the projection replayed from the journal."""
    genesis = ledger.entry_at(1)
    init = readable(genesis.kind, genesis.body) if genesis is not None else None
    key = load_public_key(init.public_key if isinstance(init, Init) else ledger.public_key)
    report, in_force = verify_rotating(ledger.entries(), key, device=ledger.device_id)
    if not report.ok:
        return report
    if public_key_text(in_force) != ledger.public_key:
        return ChainReport(
            False,
            report.entries,
            report.head,
            report.head_seq,
            1,
            "the device key on record is not the one the journal hands over to",
        )
    recorded = ledger.journal.recorded_head()
    if recorded != f"{report.head_seq}:{report.head}" and not (
        recorded == "0:" and report.entries == 0
    ):
        seq = int(recorded.split(":")[0]) if recorded.split(":")[0].isdigit() else 0
        return ChainReport(
            False,
            report.entries,
            report.head,
            report.head_seq,
            min(seq, report.head_seq + 1),
            "journal ends before its recorded head (truncated)",
        )
    mismatched = _replay_projection(ledger)
    if mismatched:
        return ChainReport(
            False,
            report.entries,
            report.head,
            report.head_seq,
            mismatched[0],
            "balances differ from what the journal explains",
        )
    return report


def _replay_projection(ledger: Ledger) -> list[int]:
    """Rebuild the projection inside a transaction that is always rolled back."""
    with ledger.store.snapshot() as conn:
        try:
            before = _projection_digest(conn)
            mismatched = rebuild(conn)
            if not mismatched and _projection_digest(conn) != before:
                mismatched = [0]
            return mismatched
        except (LedgerError, KeyError, TypeError, ValueError):
            return [0]


def _projection_digest(conn: Any) -> list[Any]:
    return [
        sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)  # noqa: S608
        for table in PROJECTION_TABLES
    ]


def export_log(ledger: Ledger, out: Path) -> Exported:
    header = {
        "format": EXPORT_FORMAT,
        "device": ledger.device_id,
        "store": ledger.store_id,
        "till": ledger.till_id,
        "public_key": ledger.public_key,
    }
    count, head = 0, ""
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(header) + "\n")
            for entry in ledger.entries():
                handle.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
                count, head = count + 1, entry.hash
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise LedgerError("io_error", f"--out: cannot write {out}: {error.strerror}") from None
    return Exported(entries=count, head=head, out=str(out))


def verify_file(path: Path, public_key: str) -> ChainReport:
    """Check an exported log with the device's public key alone (no database)."""
    try:
        key = load_public_key(
            Path(public_key).read_text() if Path(public_key).is_file() else public_key
        )
    except (ValueError, OSError):
        raise InvalidInput("invalid_public_key", "--public-key: not a base64 Ed25519 key") from None
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as error:
        raise InvalidInput(
            "file_not_found", f"--file: cannot read {path}: {error.strerror}"
        ) from None
    with handle:
        try:
            header = json.loads(handle.readline())
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            raise InvalidInput("invalid_log", f"--file: {path} is not a tillpoints log export")
        entries, malformed_line = _file_entries(handle)
    device = str(header.get("device"))
    report, _ = verify_rotating(entries, key, device=device)
    if report.ok and malformed_line is not None:
        # Everything before the bad line verified: the next entry is the first bad one.
        return ChainReport(
            False,
            report.entries,
            report.head,
            report.head_seq,
            report.head_seq + 1,
            f"line {malformed_line} is not a journal entry",
        )
    return report


def _file_entries(lines: Iterator[str]) -> tuple[list[Entry], int | None]:
    """The entries of an export, and the number of the first line that is not one
    (the chain ends there)."""
    entries = []
    for number, line in enumerate(lines, start=2):
        try:
            entries.append(Entry.from_json(json.loads(line)))
        except (ValueError, json.JSONDecodeError):
            return entries, number
    return entries, None
