"""The till's privacy tables: migration ``007_privacy`` of ``agent.store.MIGRATIONS``,
and the erasure of a member's personal data on this till (issue 17).

- ``member_keys``: the key of every member whose enrolment this till sealed
  (``agent.privacy``), held outside the journal: deleting a row erases that
  member's personal fields from the journal for good.
- ``erased_members``: who was erased here and when (ids only), so that a second
  instruction is a no-op.

This module must not import ``agent.store`` (which imports it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

# The key of HQ's signed download that lists the members to erase (sync.hq.directory).
ERASED_KEY = "erased"

_DDL = (
    "CREATE TABLE member_keys (member_id TEXT PRIMARY KEY, key BLOB NOT NULL, "
    "created_at TEXT NOT NULL)",
    "CREATE TABLE erased_members (member_id TEXT PRIMARY KEY, erased_at TEXT NOT NULL)",
)


def migrate_007_privacy(db: Any) -> None:
    """``db`` is the ``sqlite_utils.Database`` the migration runner passes."""
    for statement in _DDL:
        db.execute(statement)


def member_key(conn: sqlite3.Connection, member_id: str) -> bytes | None:
    row = conn.execute("SELECT key FROM member_keys WHERE member_id = ?", (member_id,)).fetchone()
    return None if row is None else bytes(row[0])


def keep_key(conn: sqlite3.Connection, member_id: str, key: bytes, at: str) -> None:
    conn.execute("INSERT INTO member_keys VALUES (?, ?, ?)", (member_id, key, at))


def is_erased(conn: sqlite3.Connection, member_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM erased_members WHERE member_id = ?", (member_id,))
    return row.fetchone() is not None


def keys_of(conn: sqlite3.Connection, member_ids: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for member_id in member_ids:
        key = member_key(conn, member_id)
        if key is not None:
            found[member_id] = key
    return found


def erase_here(conn: sqlite3.Connection, member_ids: list[str], at: str) -> int:
    """Destroy the keys and the projected personal fields of ``member_ids`` in the
    caller's transaction (``secure_delete`` is on for the till's connection:
    ``agent.store``); returns how many were not erased here before."""
    done = 0
    for member_id in member_ids:
        conn.execute("DELETE FROM member_keys WHERE member_id = ?", (member_id,))
        conn.execute(
            "UPDATE members SET name = '', phone_key = NULL, phone_last4 = NULL, "
            "birthday = NULL, gender = NULL, district = NULL, household = NULL, "
            "consent_marketing = 0 WHERE member_id = ?",
            (member_id,),
        )
        conn.execute(
            "UPDATE hq_members SET name = NULL, phone_key = NULL, phone_last4 = NULL, "
            "birthday_month = NULL WHERE member_id = ?",
            (member_id,),
        )
        fresh = conn.execute(
            "INSERT INTO erased_members VALUES (?, ?) ON CONFLICT DO NOTHING", (member_id, at)
        )
        done += fresh.rowcount
    return done
