"""WAL checkpoints off the earn's path (issue 18).

SQLite copies the WAL back into the database file (a checkpoint) from inside the
commit that takes the WAL past ``wal_autocheckpoint`` pages: with the default of
1,000 pages, one earn in about a hundred paid for copying and flushing a
thousand pages, and that earn was the p99 a POS saw. The agent hands the work to
this thread instead: told of each commit (``noted``), it runs a ``PASSIVE``
checkpoint on its own connection every ``every`` commits (about as often as
SQLite would) and at least every ``interval`` seconds when anything was written
(another process's commits included). A passive checkpoint takes no write lock,
so earns keep committing beside it.

Durability does not depend on it: a commit is durable once its WAL frames are
flushed (``synchronous=FULL``, ``agent.store``), and a checkpoint only copies
frames already durable, itself flushing the file before the WAL may be reused;
a process killed during one leaves a WAL that the next open replays
(tests/test_checkpointer.py kills one). The ledger's own connection keeps a
high ``wal_autocheckpoint`` (``Store.hand_over_checkpoints``) so that the WAL
stays bounded even if this thread fell behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from agent.store import BUSY_TIMEOUT_MS

logger = logging.getLogger("tillpoints.checkpointer")

EVERY_COMMITS = 100  # an earn writes about nine WAL pages: ~900 pages a checkpoint
INTERVAL_S = 1.0


class Checkpointer:
    """A thread that checkpoints the WAL of the SQLite file at ``path``."""

    def __init__(
        self, path: Path, every: int = EVERY_COMMITS, interval: float = INTERVAL_S
    ) -> None:
        self.path, self.every, self.interval = path, every, interval
        self.checkpoints = 0  # the rounds that copied pages
        self._commits = 0
        self._stop = threading.Event()
        self._due = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def noted(self) -> None:
        """One more commit (``Store.after_commit``): wake the thread every ``every``."""
        self._commits += 1
        if self._commits >= self.every:
            self._commits = 0
            self._due.set()

    def stop(self) -> None:
        """Stop after the checkpoint under way, if any, and close the connection."""
        self._stop.set()
        self._due.set()
        self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=FULL")
            while True:
                self._due.wait(self.interval)
                self._due.clear()
                if self._stop.is_set():
                    return
                self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, _frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        except sqlite3.Error as error:
            # The next round tries again; the writers' own autocheckpoint is the backstop.
            logger.warning("checkpoint of %s failed: %s", self.path, error)
            return
        if copied > 0:  # pages copied, whether or not the whole WAL was (``busy``)
            self.checkpoints += 1
