"""Opening HQ's store: the backend a URL names, its schema migrated.

Kept apart from the interface (``sync.hq.db``) so that the storage floor points
one way: the backends and the schema import the interface, this module imports
them, and nothing of the storage imports insight (tests/test_floors.py).
"""

from __future__ import annotations

from pathlib import Path

from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.schema import migrate


def open_store(url: str, key: Path | None = None) -> HQStore:
    """``sqlite:///PATH`` or ``postgresql://...``; the schema is migrated on open.
    ``key``: HQ's signing key file, where it is not the default (sync.hq.keyfile)."""
    store: HQStore
    if url.startswith("sqlite:///"):
        from sync.hq.sqlite import SQLiteStore

        store = SQLiteStore(url)
    elif url.startswith(("postgresql://", "postgres://")):
        from sync.hq.postgres import PostgresStore

        store = PostgresStore(url)
    else:
        raise SyncError(
            "invalid_db_url",
            "db: give sqlite:///PATH or postgresql://USER@HOST/DB",
            exit_status=2,
            http_status=400,
        )
    store.key_path = key
    migrate(store)
    return store
