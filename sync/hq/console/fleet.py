"""The fleet of tills as HQ sees it (``hq devices``, ``/console/devices``).

``last_sync`` is the latest of the till's last upload (its newest batch) and its
last download (``devices.last_seen_at``); ``acked_seq`` is how far HQ holds its
journal; ``clock_skew_s`` is the till's clock against HQ's at its last upload. A
``software`` is what the till said it runs at its last download (its
``User-Agent``). A till whose last sync is older than the chain's ``stale_after_hours`` (24 unless
set) is ``stale``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sync.errors import invalid
from sync.hq.db import HQStore, Tx

STALE_KEY = "stale_after_hours"
DEFAULT_STALE_HOURS = 24
MAX_STALE_HOURS = 24 * 366


def stale_hours(tx: Tx) -> int:
    row = tx.one("SELECT value FROM hq_meta WHERE key = ?", (STALE_KEY,))
    text = str(row[0]) if row else ""
    return int(text) if text.isdigit() and 0 < int(text) <= MAX_STALE_HOURS else DEFAULT_STALE_HOURS


def set_stale_hours(store: HQStore, hours: int) -> None:
    if not 0 < hours <= MAX_STALE_HOURS:
        raise invalid("invalid_stale_hours", f"stale-hours: 1 to {MAX_STALE_HOURS}")
    with store.write() as tx:
        tx.run(
            "INSERT INTO hq_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (STALE_KEY, str(hours)),
        )


def _when(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _seconds(since: dt.datetime | None, now: dt.datetime) -> int | None:
    return None if since is None else max(0, int((now - since).total_seconds()))


def devices(store: HQStore, now: dt.datetime) -> dict[str, Any]:
    """Every registered till, by store and till, with how it stands."""
    with store.read() as tx:
        hours = stale_hours(tx)
        rows = tx.all(
            "SELECT d.device, d.store, d.till, d.state, d.head_seq, d.frozen_reason, "
            "d.registered_at, d.last_seen_at, d.clock_skew_s, d.software, "
            "(SELECT MAX(b.stored_at) FROM batches b WHERE b.device = d.device) "
            "FROM devices d ORDER BY d.store, d.till, d.device"
        )
    listed = []
    for device, store_id, till, state, seq, reason, registered, seen, skew, soft, upload in rows:
        uploaded, downloaded = _when(upload), _when(seen)
        last = max((t for t in (uploaded, downloaded) if t is not None), default=None)
        since = _seconds(last or _when(registered), now)
        listed.append(
            {
                "device_id": str(device),
                "store": str(store_id),
                "till": str(till),
                "state": str(state),
                "last_sync": upload if last is uploaded else seen,
                "last_upload": upload,
                "since_upload_s": _seconds(uploaded, now),
                "acked_seq": int(seq),
                "clock_skew_s": None if skew is None else int(skew),
                "frozen": str(state) == "frozen",
                "frozen_reason": reason,
                "software": soft,
                "stale": since is not None and since > hours * 3600,
            }
        )
    return {"devices": listed, "stale_after_hours": hours}
