"""The till's sync tables: migration ``002_sync`` of ``agent.store.MIGRATIONS``.

- ``sync_state``: what this till knows about HQ: the acknowledged head (only from
  a verified, signed ack), the download cursor, when it last heard from HQ.
- ``hq_members``, ``hq_cards``: the chain's directory as HQ last sent it (only the
  fields a counter needs: phone keys of this store's members only, and no digits of
  a number; ``phone_last4`` stays empty, migration ``006_forget_phones``).
- ``hq_balances``: HQ-confirmed balances and ``included_seq``, how far HQ held this
  till's own chain when it computed them (``agent.till_view``).
- ``hq_rules``, ``hq_staff``: rules and staff sent down by HQ (may be empty).

HQ's pinned public key and URL live in ``meta`` (``hq_public_key``, ``hq_url``).
This module must not import ``agent.store`` (which imports it).
"""

from __future__ import annotations

from typing import Any

_DDL = (
    "CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE hq_members (member_id TEXT PRIMARY KEY, name TEXT, phone_key TEXT, "
    "phone_last4 TEXT, birthday_month INTEGER, enrolled_store TEXT)",
    "CREATE INDEX hq_members_phone ON hq_members (phone_key)",
    "CREATE TABLE hq_cards (card TEXT PRIMARY KEY, member_id TEXT NOT NULL, state TEXT NOT NULL)",
    "CREATE INDEX hq_cards_member ON hq_cards (member_id)",
    "CREATE TABLE hq_balances (member_id TEXT PRIMARY KEY, balance INTEGER NOT NULL, "
    "as_of TEXT NOT NULL, included_seq INTEGER NOT NULL)",
    "CREATE TABLE hq_rules (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE hq_staff (staff_id TEXT PRIMARY KEY, name TEXT, role TEXT)",
)


def migrate_002_sync(db: Any) -> None:
    """``db`` is the ``sqlite_utils.Database`` the migration runner passes."""
    for statement in _DDL:
        db.execute(statement)


def migrate_006_forget_phones(db: Any) -> None:
    """Issue 12: forget what earlier downloads stored beyond the counter's needs: the
    last four digits of every member's number, and the phone keys of other stores'
    members. ``secure_delete`` overwrites the old bytes in the file's pages
    (``agent.store.Store.migrate`` checkpoints the WAL afterwards)."""
    db.execute("PRAGMA secure_delete = ON")
    db.execute("UPDATE hq_members SET phone_last4 = NULL WHERE phone_last4 IS NOT NULL")
    db.execute(
        "UPDATE hq_members SET phone_key = NULL WHERE phone_key IS NOT NULL AND "
        "enrolled_store IS NOT (SELECT value FROM meta WHERE key = 'store')"
    )
    db.execute("PRAGMA secure_delete = OFF")
