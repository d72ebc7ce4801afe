"""A till's own report that it is one of two histories of its device.

A till whose journal is behind HQ's signed head, or differs from it, was
restored from a backup or cloned; it refuses to upload (``restored_from_backup``)
and reports it here, so that HQ learns of the clone even though the clone never
uploads a forking entry. The report is a request like any other, signed with the
device's transport key (``authenticate``), and minimal: where the till's journal
stands, ``{device, seq, hash, head_seq}``: its entry ``seq`` has ``hash`` and its
journal ends at ``head_seq``. HQ believes only what contradicts what it holds:

- ``diverged``: HQ holds entry ``seq`` with another hash;
- ``behind``: the till's journal ends at ``seq`` (``head_seq == seq``), before
  HQ's head.

Either freezes the device with a ``fork`` alert (``sync.hq.devices.freeze``, as
an upload HQ judges a fork does); while the device is frozen, a report changes
nothing (the clone reports on every run). A report that contradicts nothing (the till
holds HQ's head) is refused, 422 ``no_fork``, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sync.errors import invalid, unverified
from sync.hq.db import HQStore
from sync.hq.devices import freeze
from sync.registration import State

_HASH = re.compile(r"[0-9a-f]{64}")


def report_fork(store: HQStore, device: str, report: Any, now: dt.datetime) -> dict[str, Any]:
    """Check ``report`` from the authenticated ``device``; freeze it if it holds."""
    seq, digest, till_head = _fields(device, report)
    with store.read() as tx:
        row = tx.one("SELECT head_seq, state FROM devices WHERE device = ?", (device,))
        held = tx.one("SELECT hash FROM entries WHERE device = ? AND seq = ?", (device, seq))
    if row is None:
        raise unverified("unknown_device", f"device {device!r} is not registered", http_status=401)
    hq_head = int(row[0])
    if seq > hq_head:
        raise unverified("no_fork", f"seq: HQ holds this device only up to {hq_head}")
    if held is None or str(held[0]) != digest:
        kind = "diverged"
        reason = f"the till's entry {seq} differs from HQ's"
    elif till_head == seq < hq_head:
        kind = "behind"
        reason = f"the till's journal ends at {seq}, before HQ's head {hq_head}"
    else:
        raise unverified("no_fork", f"the till holds HQ's entry {seq}: nothing contradicts HQ")
    detail = {
        "seq": seq,
        "code": "fork_reported",
        "case": kind,
        "reason": f"{reason}: a second history of this device (cloned, or restored "
        "from a backup), reported by the till",
        "till_head_seq": till_head,
        "hq_head_seq": hq_head,
    }
    if row[1] != State.FROZEN.value:  # frozen already: its alert is raised
        freeze(store, device, "fork", detail, now)
    return {"device": device, "state": "frozen", "alert": "fork", "case": kind}


def _fields(device: str, report: Any) -> tuple[int, str, int]:
    if not isinstance(report, dict) or set(report) != {"device", "seq", "hash", "head_seq"}:
        raise invalid("malformed_report", "report: an object with device, seq, hash, head_seq")
    if report["device"] != device:
        raise invalid("device_mismatch", "device: the report names another device")
    seq, digest, head = report["seq"], report["hash"], report["head_seq"]
    numbers = (seq, head)
    if any(type(n) is not int for n in numbers) or not 1 <= seq <= head < 2**62:
        raise invalid("malformed_report", "seq, head_seq: whole numbers, 1 <= seq <= head_seq")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise invalid("malformed_report", "hash: 64 lowercase hex digits")
    return seq, digest, head
