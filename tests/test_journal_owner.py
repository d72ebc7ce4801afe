"""One Journal owns the journal table (agent.journal): it appends (signs, inserts,
records the head) and reads it back, and no other production module holds SQL
that reads or writes the table."""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.audit import verify_ledger
from agent.chain import GENESIS_PREV, canonical, verify_chain
from agent.errors import InvalidInput, LedgerError, Refused
from agent.journal import Journal, entry_from_row, row_of
from agent.keys import load_public_key
from agent.ledger import Ledger
from agent.rotation import rotate_device_key
from tests.conftest import Clock, journal_count
from tests.test_journal import CARD, busy_fixture  # noqa: F401  (the `busy` fixture)

REPO = Path(__file__).resolve().parents[1]
# SQL that reads or writes rows of the table (a migration's CREATE ... ON journal is
# not a read or a write).
JOURNAL_SQL = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+journal\b", re.IGNORECASE)


def _state(ledger: Ledger) -> tuple[Any, ...]:
    """Everything an append could touch: the journal, its recorded head, the
    projection's rows."""
    conn = ledger.store.conn
    return (
        conn.execute("SELECT * FROM journal ORDER BY seq").fetchall(),
        ledger.journal.recorded_head(),
        conn.execute("SELECT * FROM receipts ORDER BY op, receipt").fetchall(),
        conn.execute("SELECT * FROM lots ORDER BY lot_id").fetchall(),
    )


def test_reads_give_back_what_the_ledger_appended(busy: Ledger) -> None:
    journal = busy.journal
    entries = list(journal)
    assert [entry.seq for entry in entries] == list(range(1, 10))
    assert journal.head() == (9, entries[-1].hash) == busy.head()
    assert journal.recorded_head() == f"9:{entries[-1].hash}"
    assert journal.last() == entries[-1] and journal.last_row() == row_of(entries[-1])
    assert verify_chain(entries, load_public_key(busy.public_key)).ok
    for entry in entries:
        assert journal.entry_at(entry.seq) == entry
        assert journal.hash_at(entry.seq) == entry.hash
        # Stored as the canonical text signed over: the row and the entry are one.
        assert journal.row_at(entry.seq) == row_of(entry)
        assert entry_from_row(busy.device_id, row_of(entry)) == entry
    assert list(journal.read_from(3, 2)) == entries[2:4]
    assert list(journal.rows_from(5)) == [row_of(entry) for entry in entries[4:]]
    assert list(journal.read_from(10)) == [] and journal.entry_at(10) is None
    assert journal.hash_at(0) is None
    assert journal.key_announcement_before(9) == canonical(entries[0].body).decode()


def test_an_empty_journal_has_the_genesis_head(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "empty.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute(
        "CREATE TABLE journal (seq INTEGER PRIMARY KEY, ts TEXT, kind TEXT, staff TEXT, "
        "body TEXT, prev_hash TEXT, hash TEXT, sig TEXT)"
    )
    journal = Journal(conn, "D")
    assert journal.head() == (0, GENESIS_PREV) and journal.recorded_head() == "0:"
    assert journal.last() is None and list(journal) == []
    conn.close()


def test_append_signs_inserts_and_records_the_head(busy: Ledger, clock: Clock) -> None:
    journal = busy.journal
    before = journal.head()
    with busy.store.transaction() as conn:
        entry = journal.append(
            conn, busy.key, journal.head(conn), "adjust", "s1", {"n": 1}, clock()
        )
    assert (entry.seq, entry.prev) == (before[0] + 1, before[1])
    assert entry.ts == "2026-03-11T02:00:00.000+00:00"  # UTC, milliseconds
    assert journal.head() == (entry.seq, entry.hash)
    assert journal.recorded_head() == f"{entry.seq}:{entry.hash}"
    assert journal.entry_at(entry.seq) == entry
    assert verify_chain(list(journal), load_public_key(busy.public_key)).ok


@pytest.mark.parametrize(
    ("case", "error", "code"),
    [
        ("outside_transaction", LedgerError, "journal_outside_transaction"),
        ("float_in_body", InvalidInput, "invalid_journal_value"),
        ("head_moved", LedgerError, "journal_head_moved"),
        ("no_device", Refused, "not_initialised"),
    ],
)
def test_a_refused_append_writes_nothing(
    busy: Ledger, clock: Clock, case: str, error: type[LedgerError], code: str
) -> None:
    before = _state(busy)
    journal = Journal(busy.store.conn, "" if case == "no_device" else busy.device_id)
    seq, hash_ = journal.head()
    head = (seq - 1, "0" * 64) if case == "head_moved" else (seq, hash_)
    body: dict[str, Any] = {"points": 1.5} if case == "float_in_body" else {"points": 1}
    with pytest.raises(error) as refused:
        if case == "outside_transaction":
            journal.append(busy.store.conn, busy.key, head, "adjust", None, body, clock())
        else:
            with busy.store.transaction() as conn:
                journal.append(conn, busy.key, head, "adjust", None, body, clock())
    assert refused.value.code == code
    assert _state(busy) == before


def test_an_append_refused_after_the_projection_rolls_the_projection_back(
    busy: Ledger,
) -> None:
    """One fact, one transaction: the projection rows written for an entry that
    cannot be appended are rolled back with it."""
    before = _state(busy)
    busy.journal.device = ""  # the append, after the earn's rows, refuses
    with pytest.raises(Refused) as refused:
        busy.earn(CARD, "R-late", amount=2000)
    assert refused.value.code == "not_initialised"
    assert _state(busy) == before


def test_the_key_rotation_appends_through_the_journal(
    busy: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds: list[str] = []
    append = Journal.append

    def spy(self: Journal, conn: sqlite3.Connection, *args: Any) -> Any:
        kinds.append(args[2])
        return append(self, conn, *args)

    monkeypatch.setattr(Journal, "append", spy)
    state = busy.state_dir
    busy.close()
    rotated = rotate_device_key(state)
    assert kinds == ["key_rotate"]
    ledger = Ledger(state)
    try:
        assert ledger.head()[0] == rotated["seq"] == 10
        assert ledger.journal.recorded_head() == f"10:{ledger.head()[1]}"
        ledger.earn(CARD, "R-after", amount=1500)  # signed by the new key
        assert kinds == ["key_rotate", "earn"]
        assert verify_ledger(ledger).ok and journal_count(ledger) == 11
    finally:
        ledger.close()


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of ``path`` but its docstrings (implicit concatenations
    joined, an f-string's literal parts run together)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if id(node) in prose:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value if isinstance(part, ast.Constant) else " {} " for part in node.values
            )
            found.append((node.lineno, text))
    return found


def test_only_the_journal_module_holds_journal_sql() -> None:
    holders = [
        f"{path.relative_to(REPO)}:{line}"
        for package in ("agent", "sync", "tillpoints", "ui")
        for path in sorted((REPO / package).rglob("*.py"))
        for line, text in _strings(path)
        if JOURNAL_SQL.search(text)
    ]
    assert holders and all(where.startswith("agent/journal.py:") for where in holders), holders


def test_the_sql_pattern_finds_what_it_must() -> None:
    """The check above is only as good as its pattern."""
    found = [
        "SELECT seq FROM journal WHERE seq = ?",
        "INSERT INTO journal VALUES (?)",
        "select 1 from  journal j",
        "UPDATE journal SET body = ?",
    ]
    missed = ["CREATE INDEX journal_offer_take ON journal (kind)", "the journal is empty"]
    assert all(JOURNAL_SQL.search(text) for text in found)
    assert not any(JOURNAL_SQL.search(text) for text in missed)


# The modules that may hold the store's connection itself (agent/store.py's
# docstring): the store, the journal, and the ledger's own modules. Everything else
# goes through the owner's methods (a transaction, a snapshot, the journal, ...).
CONNECTION_OWNERS = re.compile(r"agent/(store|journal|ledger|ledger_[a-z]+)\.py")


def _store_connections(source: str) -> list[int]:
    """Lines of ``source`` that reach a store's connection: ``<...store>.conn``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr != "conn":
            continue
        owner = node.value
        name = (
            owner.id
            if isinstance(owner, ast.Name)
            else owner.attr
            if isinstance(owner, ast.Attribute)
            else ""
        )
        if name.lower().endswith("store"):
            found.append(node.lineno)
    return found


def test_only_the_storage_and_the_ledger_reach_the_store_connection() -> None:
    reaching = [
        f"{path.relative_to(REPO)}:{line}"
        for package in ("agent", "drivers", "sync", "tillpoints", "ui")
        for path in sorted((REPO / package).rglob("*.py"))
        if not CONNECTION_OWNERS.fullmatch(str(path.relative_to(REPO)))
        for line in _store_connections(path.read_text(encoding="utf-8"))
    ]
    assert reaching == []
    # ... and the owners themselves are scanned: the check sees what it must.
    assert _store_connections((REPO / "agent" / "ledger_reads.py").read_text(encoding="utf-8"))


def test_the_connection_check_finds_what_it_must() -> None:
    found = [
        "ledger.store.conn.execute('SELECT 1')",
        "conn = store.conn",
        "self.context.store.conn",
        "Journal(session.store.conn)",
        "hq_store.conn",
    ]
    missed = ["store.transaction()", "self.conn.execute('x')", "store.connect()", "conn.store"]
    assert all(_store_connections(text) for text in found)
    assert not any(_store_connections(text) for text in missed)
