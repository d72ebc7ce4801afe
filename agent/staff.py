"""Staff ids, roles and PINs.

PINs are stored only as scrypt hashes (RFC 7914; a slow, memory-hard hash: a stolen
till does not give away a 4-digit PIN in microseconds). Failed attempts are counted
in the ledger file, so a restart does not reset them: after ``MAX_FAILURES`` wrong
PINs the staff id is locked for ``LOCK_S`` seconds, doubling each time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Callable

from agent import fields
from agent.errors import InvalidInput, Refused
from agent.store import Store

ROLES = ("cashier", "supervisor")
MAX_FAILURES = 5
LOCK_S = 300
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_PIN = re.compile(r"[0-9]{4,12}", re.ASCII)


class PinLocked(Refused):
    """Too many wrong PINs: HTTP 429 on the local API."""

    http_status = 429


def _hash(pin: str, salt: bytes) -> str:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, **_SCRYPT).hex()


def add_staff(conn: sqlite3.Connection, staff_id: str, role: str, pin: str) -> dict[str, str]:
    """Create or re-key a staff member (inside the caller's transaction)."""
    fields.staff(staff_id)
    if role not in ROLES:
        raise InvalidInput("invalid_role", f"role: one of {', '.join(ROLES)}")
    if not _PIN.fullmatch(pin):
        raise InvalidInput("invalid_pin", "pin: 4 to 12 digits")
    salt = secrets.token_bytes(16)
    conn.execute(
        "INSERT INTO staff (staff_id, role, pin_salt, pin_hash) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(staff_id) DO UPDATE SET role = excluded.role, "
        "pin_salt = excluded.pin_salt, pin_hash = excluded.pin_hash, failures = 0, "
        "locked_until = 0, lockouts = 0",
        (staff_id, role, salt.hex(), _hash(pin, salt)),
    )
    return {"staff_id": staff_id, "role": role}


def list_staff(store: Store) -> list[dict[str, object]]:
    with store.snapshot() as conn:
        rows = conn.execute(
            "SELECT staff_id, role, locked_until FROM staff ORDER BY staff_id"
        ).fetchall()
    now = time.time()
    return [{"staff_id": r[0], "role": r[1], "locked": r[2] > now} for r in rows]


def authorise(
    store: Store,
    staff_id: object,
    pin: object,
    role: str,
    clock: Callable[[], float] = time.time,
) -> str:
    """Check a staff id and PIN for ``role`` (a supervisor may do a cashier's work).
    Writes the failure count in its own transaction; returns the staff id."""
    if not isinstance(staff_id, str) or not isinstance(pin, str) or not pin:
        raise Refused(
            "supervisor_required" if role == "supervisor" else "pin_required",
            f"this action needs a {role}'s staff id and PIN",
        )
    with store.snapshot() as conn:
        row = conn.execute(
            "SELECT role, pin_salt, pin_hash, failures, locked_until, lockouts FROM staff "
            "WHERE staff_id = ?",
            (staff_id,),
        ).fetchone()
    now = clock()
    if row is not None and row[4] > now:
        raise PinLocked("pin_locked", f"staff {staff_id}: too many wrong PINs, try later")
    good = row is not None and hmac.compare_digest(
        _hash(pin, bytes.fromhex(row[1])) if pin.isascii() else "", row[2]
    )
    if not good:
        if row is not None:
            _count_failure(store, staff_id, row[3] + 1, row[5], now)
        raise Refused("bad_pin", f"staff {staff_id}: wrong staff id or PIN")
    if role == "supervisor" and row[0] != "supervisor":
        raise Refused("supervisor_required", f"staff {staff_id} is not a supervisor")
    if row[3]:
        with store.transaction() as writer:
            writer.execute("UPDATE staff SET failures = 0 WHERE staff_id = ?", (staff_id,))
    return staff_id


def _count_failure(store: Store, staff_id: str, failures: int, lockouts: int, now: float) -> None:
    with store.transaction() as conn:
        if failures >= MAX_FAILURES:
            conn.execute(
                "UPDATE staff SET failures = 0, lockouts = lockouts + 1, locked_until = ? "
                "WHERE staff_id = ?",
                (now + LOCK_S * 2 ** min(lockouts, 6), staff_id),
            )
        else:
            conn.execute("UPDATE staff SET failures = ? WHERE staff_id = ?", (failures, staff_id))
