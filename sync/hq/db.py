"""HQ storage behind one small interface, with SQLite and PostgreSQL backends.

HQ keeps no state between requests (docs/architecture.md, "Scale"): every guarantee
lives in the database. The interface is therefore just transactions:

- ``write()``: one read-write transaction. SQLite takes the file's write lock up
  front (``BEGIN IMMEDIATE``); PostgreSQL runs READ COMMITTED and callers lock the
  rows they depend on with ``tx.locked`` (``SELECT ... FOR UPDATE``).
- ``read()``: one consistent snapshot (a deferred SQLite read transaction over WAL;
  PostgreSQL REPEATABLE READ, READ ONLY).

SQL is written once, portable between the two (``?`` placeholders, ``ON CONFLICT``,
``||``); the PostgreSQL backend rewrites the placeholders. Connections are per
thread, opened lazily, so one store object serves a threaded WSGI worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from sync.errors import SyncError

Row = tuple[Any, ...]


class Tx(Protocol):
    """One open transaction."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def locked(self, sql: str, params: Sequence[Any] = (), skip: bool = False) -> Row | None:
        """``one`` that also row-locks what it read (``SELECT ... FOR UPDATE`` on
        PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the file's lock).
        ``skip``: a row another transaction holds is not waited for but left out
        (``SKIP LOCKED``), so None may mean "busy"."""
        ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert ``rows`` into ``table``'s ``columns`` in bulk: PostgreSQL's
        ``COPY ... FROM STDIN`` (one stream, no statement per row; a night's upload
        spent half its database time in per-row INSERTs), an ``executemany`` on
        SQLite. Keys hold as for an INSERT: one duplicate fails the whole copy."""
        ...

    def add_new(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert whole rows (every column of ``table``, in order) in bulk, leaving
        out each one whose key ``table`` already holds (``ON CONFLICT DO NOTHING``):
        on PostgreSQL one ``COPY`` into a session's temporary copy of the table and
        one ``INSERT ... SELECT`` from it (a refresh's statement per row took a
        tenth of a simulated worker's time, issue 18), an ``executemany`` on SQLite.
        Not for personal data or members' keys: the staging table's file is not
        cleaned by an erasure (``hq member erase`` vacuums HQ's own tables only)."""
        ...

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]: ...


class HQStore(Protocol):
    """A connection (per thread) to HQ's database."""

    url: str
    dialect: str
    # HQ's signing key file when given (--key); None: the default (sync.hq.keyfile).
    key_path: Path | None

    def write(self) -> AbstractContextManager[Tx]: ...

    def read(self) -> AbstractContextManager[Tx]: ...

    def compact(self, tables: Sequence[str]) -> None:
        """Make deleted rows' bytes go from the files (after an erasure, issue 17)."""
        ...

    def close(self) -> None: ...


# Values an ``IN (...)`` list of ``looked_up`` binds at once: SQLite binds at most
# 32,766 parameters a statement, PostgreSQL 65,535.
IN_LIST = 500


def in_lists(values: Sequence[Any]) -> Iterator[tuple[str, Sequence[Any]]]:
    """``values`` a few hundred at a time, each with its ``IN`` list's marks."""
    for first in range(0, len(values), IN_LIST):
        chunk = values[first : first + IN_LIST]
        yield ", ".join("?" * len(chunk)), chunk


def looked_up(tx: Tx, sql: str, values: Sequence[Any]) -> list[Row]:
    """The rows of ``sql`` (whose ``{}`` is an ``IN`` list's place) for ``values``,
    a few hundred a statement: one round trip for many keys, not one each (a refresh
    looked up each enrolment's key, erasure and consent one by one, issue 18)."""
    found: list[Row] = []
    for marks, chunk in in_lists(values):
        found += tx.all(sql.format(marks), chunk)
    return found


def next_batch_no(tx: Tx) -> int:
    """The chain-wide number of the next thing the download carries in order
    (a batch, a card block, an erasure); taken last in its transaction, so the
    clock row is held briefly."""
    clock = tx.one("UPDATE batch_clock SET n = n + 1 WHERE id = 1 RETURNING n")
    assert clock is not None
    return int(clock[0])


def conflict(message: str) -> SyncError:
    """A unique key refused a row another worker stored first: retry the request."""
    return SyncError("concurrent_upload", message, exit_status=1, http_status=409)


def unavailable(message: str) -> SyncError:
    return SyncError("storage_unavailable", message, exit_status=1, http_status=503)
