"""What a write reads that rarely changes, read once per change (issue 18).

Every write of the ledger reads, under its write lock, state that only ``sync``,
``register`` or another process changes, and that the till's own operations never
write: whether the till was found restored from a backup (``sync_state``), when HQ
was last heard from (``sync_state.last_download``), which cards HQ blocked
(``hq_cards``), which members HQ confirmed a balance for (``hq_balances``); and
the journal's head, which only the ledger's own writes move. Read fresh, they are
five statements of an earn's nineteen.

``StateCache`` keeps them between writes and drops them all at the start of a
write (``begin``, under the write lock) when anything else may have written the
file since the ledger's last commit:

- another connection (a ``tillpoints sync`` process, the CLI, HQ's download):
  ``PRAGMA data_version`` changed (SQLite changes it exactly when another
  connection committed);
- this same connection outside the ledger's own write path (``sync`` run in the
  process, key rotation, a migration): ``Connection.total_changes`` is not what it
  was right after the ledger's last commit (``committed``).

So nothing is kept across a change it did not make itself; and the journal's
``UNIQUE`` sequence refuses an entry after a head that moved (``journal_head_moved``)
should that reasoning ever be wrong. Outside a write (``active`` false) every read
goes to the file, as before.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from agent.store import RESTORED_KEY
from agent.till_view import has_hq_balance, hours_since, last_download

_UNREAD = object()
# Cards and accounts answered from memory at most: a till offline for weeks serves
# many members between changes, and the agent's memory is bounded (docs/performance.md).
KEPT = 4_096


class StateCache:
    def __init__(self) -> None:
        self.active = False
        self._token: tuple[int, int] | None = None
        self._restored: object = _UNREAD
        self._last_download: object = _UNREAD
        self._blocked: dict[str, bool] = {}
        self._hq_balance: dict[str, bool] = {}
        self.head: tuple[int, str] | None = None

    def begin(self, conn: sqlite3.Connection) -> None:
        """Under the write lock: drop everything if the file changed other than by
        the ledger's last commit, then answer from memory until ``end``."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if self._token != (version, conn.total_changes):
            self.clear()
            self._token = (version, conn.total_changes)
        self.active = True

    def committed(self, conn: sqlite3.Connection, head: tuple[int, str] | None) -> None:
        """The ledger's own write committed: its changes are known (``head``, or
        ``None`` when it appended nothing)."""
        if self._token is not None:
            self._token = (self._token[0], conn.total_changes)
        if head is not None:
            self.head = head

    def end(self) -> None:
        self.active = False

    def clear(self) -> None:
        self._token = None
        self._restored = self._last_download = _UNREAD
        self._blocked.clear()
        self._hq_balance.clear()
        self.head = None

    # -- the reads -------------------------------------------------------------------

    def restored(self, conn: sqlite3.Connection) -> str | None:
        """``sync_state``'s restored-till mark (``agent.ledger.restored_refusal``)."""
        if not self.active or self._restored is _UNREAD:
            found = restored_mark(conn)
            if not self.active:
                return found
            self._restored = found
        return self._restored  # type: ignore[return-value]

    def hours_since_hq(self, conn: sqlite3.Connection, now: dt.datetime) -> float | None:
        """``agent.till_view.hours_since_hq``, its row read once per change."""
        if not self.active or self._last_download is _UNREAD:
            text = last_download(conn)
            if self.active:
                self._last_download = text
        else:
            text = self._last_download  # type: ignore[assignment]
        return hours_since(text, now)

    def blocked_by_hq(self, conn: sqlite3.Connection, card: str) -> bool:
        """Whether HQ's directory blocks ``card`` chain-wide."""
        known = self._blocked.get(card) if self.active else None
        if known is None:
            known = (
                conn.execute(
                    "SELECT 1 FROM hq_cards WHERE card = ? AND state = 'blocked'", (card,)
                ).fetchone()
                is not None
            )
            if self.active:
                _keep(self._blocked, card, known)
        return known

    def has_hq_balance(self, conn: sqlite3.Connection, account: str) -> bool:
        """``agent.till_view.has_hq_balance``, once per account and change."""
        known = self._hq_balance.get(account) if self.active else None
        if known is None:
            known = has_hq_balance(conn, account)
            if self.active:
                _keep(self._hq_balance, account, known)
        return known


def _keep(answers: dict[str, bool], key: str, known: bool) -> None:
    """Remember ``known`` for ``key``, starting afresh once ``KEPT`` are held."""
    if len(answers) >= KEPT:
        answers.clear()
    answers[key] = known


def restored_mark(conn: sqlite3.Connection) -> str | None:
    """What ``sync`` found when it marked this till restored or cloned, if it did."""
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (RESTORED_KEY,)).fetchone()
    return None if row is None else str(row[0])
