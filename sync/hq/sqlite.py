"""HQ storage on SQLite: the embedded default (one file, WAL, ``synchronous=FULL``).

SQLite has one writer at a time, so ``BEGIN IMMEDIATE`` *is* the device-head row
lock: two uploads of the same batch serialise on it, and the second sees the
first's head. The busy timeout lets several gunicorn workers share the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.keys import private_sqlite
from sync.hq.db import Row, conflict, unavailable

BUSY_TIMEOUT_S = 30.0
# The WAL is copied back into the file once it holds this many pages (16 MiB of
# 4 KiB pages; SQLite's default is 1,000). Every upload commits, fsynced, and at
# the default a checkpoint (the file's pages written and fsynced once more) came
# every six or seven batches of 500 earns: with two other processes writing to
# the disk, those fsyncs were much of the wait (docs/performance.md, issue 18,
# session 11). Commits stay as durable (``synchronous=FULL``); a crash replays a
# longer WAL.
WAL_CHECKPOINT_PAGES = 4000


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self.conn.execute(sql, tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def locked(self, sql: str, params: Sequence[Any] = (), skip: bool = False) -> Row | None:
        return self.one(sql, params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self.conn.execute(sql, tuple(params))]

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        marks = ", ".join("?" for _ in columns)
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        self.conn.executemany(insert, rows)

    def add_new(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join("?" for _ in rows[0])
            insert = f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608
            self.conn.executemany(insert, rows)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        for row in self.conn.execute(sql, tuple(params)):
            yield tuple(row)


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.key_path: Path | None = None
        self.path = Path(url.removeprefix("sqlite:///"))
        if not self.path.is_absolute():
            self.path = Path.cwd() / self.path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                private_sqlite(self.path)
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
                # Deleted personal data is overwritten in the file's pages (issue 17).
                conn.execute("PRAGMA secure_delete=ON")
            except (sqlite3.Error, OSError) as error:
                raise unavailable(f"cannot open {self.path}: {error}") from None
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[_SQLiteTx]:
        conn = self._conn()
        try:
            conn.execute(begin)
        except sqlite3.Error as error:
            raise unavailable(f"HQ database busy or broken: {error}") from None
        try:
            yield _SQLiteTx(conn)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as error:
            conn.execute("ROLLBACK")
            raise conflict(f"another upload stored these rows first: {error}") from None
        except sqlite3.OperationalError as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise unavailable(f"HQ database failed: {error}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def write(self) -> Any:
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> Any:
        return self._transaction("BEGIN")

    def compact(self, tables: Sequence[str]) -> None:
        """After an erasure: the WAL's old copies of the pages go (``secure_delete``
        already overwrote the file's)."""
        try:
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:
            raise unavailable(f"HQ database failed: {error}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
