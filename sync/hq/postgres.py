"""HQ storage on PostgreSQL through psycopg 3: what a chain runs HQ on.

Several gunicorn workers (and machines) share the database; the guarantees are
its own: one transaction per batch, ``UNIQUE (device, seq)`` and
``SELECT ... FOR UPDATE`` on the device's head row. Reads that must agree with
each other (a balance and the sequence numbers it includes) run in one
REPEATABLE READ snapshot.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from sync.hq.db import Row, conflict, unavailable

_PLACEHOLDER = re.compile(r"\?")
CONNECT_TIMEOUT_S = 10
# Each HQ connection's settings. No JIT compiling: HQ runs many statements of a
# few thousand rows whose row estimates (a range of batches) are several times
# too high, so PostgreSQL compiled them for 50-70 ms to save a few (a refresh's
# member sums took 370 ms a page with JIT, 132 ms without; issue 18). The URL's
# own ``options`` (a ``search_path``, say) are left as they are.
SESSION = "SET jit = off"


def _pg(sql: str) -> str:
    # Our SQL has no literal '?' or '%': rewrite qmark placeholders to psycopg's.
    return _PLACEHOLDER.sub("%s", sql)


class _PostgresTx:
    def __init__(self, conn: psycopg.Connection[Any], staged: set[str]) -> None:
        self.conn = conn
        # The connection's temporary tables (``add_new``), and those this
        # transaction has filled.
        self.staged, self.used = staged, set[str]()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(_pg(sql), tuple(params)).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self.conn.execute(_pg(sql), tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def locked(self, sql: str, params: Sequence[Any] = (), skip: bool = False) -> Row | None:
        return self.one(sql + (" FOR UPDATE SKIP LOCKED" if skip else " FOR UPDATE"), params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self.conn.execute(_pg(sql), tuple(params)).fetchall()]

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_pg(sql), list(rows))

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self._copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN", rows)

    def _copy(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def add_new(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        # The session's own copy of the table, made once a connection and emptied at
        # each commit (``ON COMMIT DELETE ROWS``), so it holds this call's rows only.
        staged = f"new_{table}"
        if staged not in self.staged:
            self.conn.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged} (LIKE {table}) "
                "ON COMMIT DELETE ROWS"
            )
            self.staged.add(staged)
        elif staged in self.used:
            self.conn.execute(f"DELETE FROM {staged}")  # noqa: S608
        self.used.add(staged)
        self._copy(f"COPY {staged} FROM STDIN", rows)
        self.conn.execute(f"INSERT INTO {table} SELECT * FROM {staged} ON CONFLICT DO NOTHING")  # noqa: S608

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        with self.conn.cursor() as cursor:
            for row in cursor.stream(_pg(sql), tuple(params)):
                yield tuple(row)


def _mapped(error: BaseException) -> BaseException:
    """A failed transaction's error as HQ reports it (a ``SyncError``), or itself."""
    if isinstance(error, pg_errors.UniqueViolation):
        return conflict(f"another upload stored these rows first: {error}")
    if isinstance(error, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        return conflict(f"concurrent transaction, retry: {error}")
    if isinstance(error, psycopg.OperationalError):
        return unavailable(f"PostgreSQL failed: {error}")
    return error


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.key_path: Path | None = None
        self._local = threading.local()

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            try:
                conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S)
                conn.execute(SESSION)
                conn.commit()
            except psycopg.Error as error:
                raise unavailable(f"cannot reach PostgreSQL: {error}") from None
            self._local.conn = conn
            self._local.staged = set()
        return conn

    @contextmanager
    def _transaction(self, setup: str | None) -> Iterator[_PostgresTx]:
        conn = self._conn()
        staged: set[str] = self._local.staged
        try:
            with conn.transaction():
                if setup:
                    conn.execute(setup)
                yield _PostgresTx(conn, staged)
        except BaseException as error:
            # A temporary table made in a transaction that rolled back is gone.
            staged.clear()
            mapped = _mapped(error)
            if mapped is error:
                raise
            raise mapped from None

    def write(self) -> Any:
        return self._transaction(None)

    def read(self) -> Any:
        return self._transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def compact(self, tables: Sequence[str]) -> None:
        """After an erasure: VACUUM the tables it touched, so that the dead row
        versions that held the personal data are reclaimed (outside a transaction)."""
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                for table in tables:
                    conn.execute(f"VACUUM {table}")
        except psycopg.Error as error:
            raise unavailable(f"PostgreSQL failed: {error}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
