"""Open alerts for the console, each with a stable key to acknowledge it by.

The alerts are ``hq alerts``'s (``sync.hq.projection.alerts``): stored ones
(forks, tampered or implausible uploads, clock skew), keyed by their row, and
derived ones (negative balances, duplicate enrolments, reused offers), keyed by
what they say, so a changed finding (a balance more negative) is a new alert.
An acknowledged alert (``hq_alert_acks``) is no longer open; it is listed with
who acknowledged it, when and why.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sync.hq.db import HQStore
from sync.hq.insight.takes import offer_alerts
from sync.hq.projection import derived_alerts


def derived_key(alert: dict[str, Any]) -> str:
    text = json.dumps(alert, sort_keys=True, default=str)
    return f"{alert['kind']}:{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def every_alert(store: HQStore) -> list[dict[str, Any]]:
    """Every alert with its ``key``, ``acknowledged`` (or None) and, for an alert
    about a device, whether that device is frozen now."""
    found = offer_alerts(store)  # opens its own transactions: before the snapshot
    with store.read() as tx:
        stored = tx.all(
            "SELECT a.alert_id, a.kind, a.device, a.detail, a.raised_at, d.state "
            "FROM alerts a LEFT JOIN devices d ON d.device = a.device ORDER BY a.alert_id"
        )
        derived = derived_alerts(tx)
        acks = {
            str(key): {"at": str(at), "operator": str(who), "note": str(note)}
            for key, at, who, note in tx.all(
                "SELECT alert_key, at, operator, note FROM hq_alert_acks"
            )
        }
    listed = [
        {
            **json.loads(str(detail)),
            "key": f"a{alert_id}",
            "kind": str(kind),
            "device": device,
            "raised_at": at,
            "device_frozen": state == "frozen",
        }
        for alert_id, kind, device, detail, at, state in stored
    ]
    listed += [{**alert, "key": derived_key(alert)} for alert in derived + found]
    for alert in listed:
        alert["acknowledged"] = acks.get(alert["key"])
        alert.setdefault("device_frozen", False)
    return listed


def open_alerts(store: HQStore) -> list[dict[str, Any]]:
    return [alert for alert in every_alert(store) if alert["acknowledged"] is None]
