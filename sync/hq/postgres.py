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


def _pg(sql: str) -> str:
    # Our SQL has no literal '?' or '%': rewrite qmark placeholders to psycopg's.
    return _PLACEHOLDER.sub("%s", sql)


class _PostgresTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(_pg(sql), tuple(params)).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self.conn.execute(_pg(sql), tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def locked(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.one(sql + " FOR UPDATE", params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self.conn.execute(_pg(sql), tuple(params)).fetchall()]

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_pg(sql), list(rows))

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        with self.conn.cursor() as cursor:
            for row in cursor.stream(_pg(sql), tuple(params)):
                yield tuple(row)


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
            except psycopg.Error as error:
                raise unavailable(f"cannot reach PostgreSQL: {error}") from None
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self, setup: str | None) -> Iterator[_PostgresTx]:
        conn = self._conn()
        try:
            with conn.transaction():
                if setup:
                    conn.execute(setup)
                yield _PostgresTx(conn)
        except pg_errors.UniqueViolation as error:
            raise conflict(f"another upload stored these rows first: {error}") from None
        except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as error:
            raise conflict(f"concurrent transaction, retry: {error}") from None
        except psycopg.OperationalError as error:
            raise unavailable(f"PostgreSQL failed: {error}") from None

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
