"""HQ's audit log of console actions: who, when, what, why (``hq_audit``).

Each action writes its row in the same transaction as its effect, so the log
never claims an action that did not happen, nor misses one that did.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sync.hq.db import HQStore, Tx
from sync.hq.insight.operators import Operator
from sync.protocol import utc_text


def record(
    tx: Tx,
    who: Operator,
    action: str,
    target: str,
    reason: str,
    now: dt.datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    tx.run(
        "INSERT INTO hq_audit (at, operator, role, action, target, reason, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            utc_text(now),
            who.name,
            who.role,
            action,
            target,
            reason,
            json.dumps(detail or {}, sort_keys=True),
        ),
    )


def recent(store: HQStore, limit: int = 200) -> list[dict[str, Any]]:
    """The newest actions first."""
    with store.read() as tx:
        rows = tx.all(
            "SELECT audit_id, at, operator, role, action, target, reason, detail FROM hq_audit "
            "ORDER BY audit_id DESC LIMIT ?",
            (limit,),
        )
    return [
        {
            "id": int(row[0]),
            "at": str(row[1]),
            "operator": str(row[2]),
            "role": str(row[3]),
            "action": str(row[4]),
            "target": str(row[5]),
            "reason": str(row[6]),
            "detail": json.loads(str(row[7])),
        }
        for row in rows
    ]
