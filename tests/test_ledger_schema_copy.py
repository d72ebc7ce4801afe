"""A simulated till's init: a copy of one migrated empty ledger, without fsyncs
(``Ledger.init(schema=..., durable=False)``), against a till's own init."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from agent.ledger import DB_FILE, Ledger
from agent.store import Store


def _shape(path: Path) -> dict[str, object]:
    """What a ledger file holds apart from its till's own identity."""
    conn = sqlite3.connect(path)
    try:
        return {
            "schema": sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")),
            "migrations": sorted(row[0] for row in conn.execute("SELECT name FROM migrations")),
            "meta": sorted(row[0] for row in conn.execute("SELECT key FROM meta")),
            "journal": [row[0] for row in conn.execute("SELECT kind FROM journal ORDER BY seq")],
            "mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        }
    finally:
        conn.close()


def test_a_copied_schema_makes_the_ledger_a_till_s_own_init_makes(tmp_path: Path) -> None:
    schema = tmp_path / "schema.db"
    Store.make_schema(schema)
    own = Ledger.init(tmp_path / "own", "S001", "T01")
    copied = Ledger.init(tmp_path / "copied", "S001", "T01", schema=schema, durable=False)
    try:
        # A real till's commits wait for the disk; a simulated till's do not.
        assert own.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert copied.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 0
        assert own.identity().store == copied.identity().store == "S001"
        assert own.device_id != copied.device_id
        entries = list(copied.journal.read_from(1))
        kinds = [entry.kind for entry in own.journal.read_from(1)]
        assert [entry.kind for entry in entries] == kinds
        assert entries[0].body["device_id"] == copied.device_id
        copied.enrol(name="Member 1", phone="07000000001", consent_marketing=True)
        own.enrol(name="Member 1", phone="07000000001", consent_marketing=True)
    finally:
        own.close()
        copied.close()
    assert _shape(tmp_path / "own" / DB_FILE) == _shape(tmp_path / "copied" / DB_FILE)
    mode = stat.S_IMODE((tmp_path / "copied" / DB_FILE).stat().st_mode)
    assert mode & 0o077 == 0
    # The template is untouched: every till copies the same empty ledger.
    assert _shape(schema)["journal"] == [] and _shape(schema)["meta"] == []


def test_a_copied_schema_never_overwrites_a_ledger(tmp_path: Path) -> None:
    schema = tmp_path / "schema.db"
    Store.make_schema(schema)
    target = tmp_path / "ledger.db"
    target.write_bytes(b"x")
    with pytest.raises(FileExistsError):
        Store.copy_schema(schema, target)
    assert target.read_bytes() == b"x"
