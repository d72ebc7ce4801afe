"""``hq verify``: re-check every stored chain from its first entry.

Ingest already verified each batch; this re-derives the same result from what
is stored now, so a row edited inside HQ's own database (by a person or a bug)
is found: every hash, signature (following key rotations), link and sequence,
and each device's head row against its last entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from agent.chain import Entry
from agent.keys import load_public_key
from agent.rotation import verify_rotating
from sync.hq.db import HQStore, Tx


def _entries(tx: Tx, device: str) -> Iterator[Entry]:
    for row in tx.stream(
        "SELECT seq, ts, kind, staff, body, prev, hash, sig FROM entries "
        "WHERE device = ? ORDER BY seq",
        (device,),
    ):
        yield Entry(
            device=device,
            seq=int(row[0]),
            ts=str(row[1]),
            kind=str(row[2]),
            staff=row[3],
            body=json.loads(str(row[4])),
            prev=str(row[5]),
            hash=str(row[6]),
            sig=str(row[7]),
        )


def verify_all(store: HQStore) -> dict[str, Any]:
    problems: list[dict[str, Any]] = []
    total = 0
    with store.read() as tx:
        devices = tx.all("SELECT device, public_key, head_seq, head_hash FROM devices ORDER BY 1")
        for device, public_key, head_seq, head_hash in devices:
            report, _ = verify_rotating(
                _entries(tx, str(device)), load_public_key(str(public_key)), device=str(device)
            )
            total += report.entries
            if not report.ok:
                problems.append(
                    {
                        "device": device,
                        "first_bad_seq": report.first_bad_seq,
                        "reason": report.reason,
                    }
                )
            elif (report.head_seq, report.head) != (int(head_seq), str(head_hash)):
                problems.append(
                    {
                        "device": device,
                        "first_bad_seq": report.head_seq + 1,
                        "reason": "the device's head row does not match its last entry",
                    }
                )
    result: dict[str, Any] = {"ok": not problems, "devices": len(devices), "entries": total}
    if problems:
        result["problems"] = problems
    return result
