"""The journal table, owned in one place: every read and write of it is here.

The till's journal is the record; everything else in ``ledger.db`` is a projection
of it (``agent.projection``). ``Journal.append`` is the one place an entry is
signed and inserted: the ledger's write path (``agent.ledger``) and the key
rotation (``agent.rotation``) both go through it, and it records the new head in
``meta.head``, which the journal checks (``agent.integrity``, ``agent.audit``)
compare with the walk's end to catch a cut tail.

Every method takes ``conn``, the connection of the caller's transaction: an
entry and the projection rows it explains commit together (one fact, one
transaction). Without it a read uses the connection the journal was opened with.
Reads return the stored rows as they are (``Row``: the body is the canonical text
the entry was signed over, not decoded) or ``agent.chain.Entry`` values.

The table itself is created by migration ``001_ledger`` (``agent.store``).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.chain import GENESIS_PREV, Entry, canonical, sign_draft
from agent.entries import Kind
from agent.errors import InvalidInput, LedgerError, Refused

# A stored row: seq, ts, kind, staff, body (canonical JSON text), prev_hash, hash,
# sig. ``Any``: a damaged file may hold anything, and the checks must say so.
Row = tuple[Any, ...]

_COLUMNS = "seq, ts, kind, staff, body, prev_hash, hash, sig"
_SELECT = f"SELECT {_COLUMNS} FROM journal"  # noqa: S608 (fixed names)
_INSERT = "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_LAST = f"{_SELECT} ORDER BY seq DESC LIMIT 1"
_HEAD = "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
_SET_HEAD = (
    "INSERT INTO meta(key, value) VALUES ('head', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
# Who an entry is about: the account of a sale, the member an enrolment created,
# or the member of an entry that names only the member.
_ENTRY_ACCOUNT = (
    "COALESCE(json_extract(body, '$.account'), json_extract(body, '$.member.member_id'), "
    "json_extract(body, '$.member_id'))"
)


def entry_from_row(device: str, row: Row) -> Entry:
    """A stored row as the entry it holds (the body decoded)."""
    return Entry(
        device=device,
        seq=row[0],
        ts=row[1],
        kind=row[2],
        staff=row[3],
        body=json.loads(row[4]),
        prev=row[5],
        hash=row[6],
        sig=row[7],
    )


def row_of(entry: Entry) -> Row:
    """What ``entry`` looks like stored: its body as canonical JSON text."""
    e = entry
    return (e.seq, e.ts, e.kind, e.staff, canonical(e.body).decode(), e.prev, e.hash, e.sig)


def entry_ts(moment: dt.datetime) -> str:
    """An entry's ``ts``: UTC, ISO 8601, milliseconds."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    """The ``journal`` table of one ledger file.

    ``device`` is the device id the entries are signed for (``meta.device_id``):
    ``append`` signs with it and the entry readers put it in every ``Entry``."""

    def __init__(self, conn: sqlite3.Connection, device: str = "") -> None:
        self.conn, self.device = conn, device

    # -- writing -----------------------------------------------------------------

    def append(
        self,
        conn: sqlite3.Connection,
        key: Ed25519PrivateKey,
        head: tuple[int, str],
        kind: str,
        staff: str | None,
        body: dict[str, Any],
        moment: dt.datetime,
    ) -> Entry:
        """Sign the entry after ``head`` (``self.head(conn)``, read under the same
        write lock) with ``key``, insert it and record it as the head, inside the
        caller's transaction. The body is stored as the very bytes signed.

        Refused with nothing written: outside a transaction (the entry would
        commit apart from the rows it explains), for a journal with no device, a
        body that is not canonical JSON, or a ``head`` that is not the last entry
        (its successor exists: another writer appended first)."""
        seq, prev = head[0] + 1, head[1]
        if not conn.in_transaction:
            raise LedgerError(
                "journal_outside_transaction",
                f"journal entry {seq} ({kind}): appended outside a transaction",
            )
        if not self.device:
            raise Refused("not_initialised", f"journal entry {seq} ({kind}): no device id yet")
        ts = entry_ts(moment)
        draft = Entry(self.device, seq, ts, kind, staff, body, prev, hash="", sig="")
        try:
            entry, body_bytes = sign_draft(key, draft)
        except (TypeError, ValueError) as error:  # floats, NaN, values JSON cannot hold
            raise InvalidInput(
                "invalid_journal_value", f"journal entry {seq} ({kind}): {error}"
            ) from None
        try:
            conn.execute(
                _INSERT, (seq, ts, kind, staff, body_bytes.decode(), prev, entry.hash, entry.sig)
            )
        except sqlite3.IntegrityError as error:
            if "UNIQUE" not in str(error):
                raise
            raise LedgerError(
                "journal_head_moved",
                f"journal entry {seq} ({kind}): the journal already holds an entry {seq}",
            ) from None
        conn.execute(_SET_HEAD, (f"{seq}:{entry.hash}",))
        return entry

    def copy_in(self, conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
        """Insert rows signed elsewhere, verbatim, and record the last as the head
        (inside the caller's transaction). For benchmarks that load a journal
        without the ledger: nothing is checked here, ``log verify`` judges them."""
        if not rows:
            return
        conn.executemany(_INSERT, rows)
        conn.execute(_SET_HEAD, (f"{rows[-1][0]}:{rows[-1][6]}",))

    # -- the head ----------------------------------------------------------------

    def head(self, conn: sqlite3.Connection | None = None) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry; ``(0, GENESIS_PREV)`` when empty."""
        db = conn or self.conn
        row = db.execute(_HEAD).fetchone()
        return (0, GENESIS_PREV) if row is None else (int(row[0]), str(row[1]))

    def recorded_head(self, conn: sqlite3.Connection | None = None) -> str:
        """``meta.head`` as ``append`` recorded it, ``"seq:hash"`` (``"0:"`` if none):
        a journal that ends before it was cut."""
        db = conn or self.conn
        row = db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
        return "0:" if row is None or not row[0] else str(row[0])

    def last_row(self, conn: sqlite3.Connection | None = None) -> Row | None:
        db = conn or self.conn
        row: Row | None = db.execute(_LAST).fetchone()
        return row

    def last(self, conn: sqlite3.Connection | None = None) -> Entry | None:
        row = self.last_row(conn)
        return None if row is None else entry_from_row(self.device, row)

    # -- reading -----------------------------------------------------------------

    def row_at(self, seq: int, conn: sqlite3.Connection | None = None) -> Row | None:
        db = conn or self.conn
        row: Row | None = db.execute(f"{_SELECT} WHERE seq = ?", (seq,)).fetchone()
        return row

    def entry_at(self, seq: int, conn: sqlite3.Connection | None = None) -> Entry | None:
        row = self.row_at(seq, conn)
        return None if row is None else entry_from_row(self.device, row)

    def hash_at(self, seq: int, conn: sqlite3.Connection | None = None) -> str | None:
        db = conn or self.conn
        row = db.execute("SELECT hash FROM journal WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def rows_from(
        self, seq: int, limit: int | None = None, conn: sqlite3.Connection | None = None
    ) -> Iterator[Row]:
        """Stored rows from ``seq`` on, in order, at most ``limit``; read lazily, so
        a walk of the whole journal holds one row at a time."""
        db = conn or self.conn
        query = f"{_SELECT} WHERE seq >= ? ORDER BY seq LIMIT ?"
        return iter(db.execute(query, (seq, -1 if limit is None else limit)))

    def read_from(
        self, seq: int, limit: int | None = None, conn: sqlite3.Connection | None = None
    ) -> Iterator[Entry]:
        """``rows_from`` as entries."""
        for row in self.rows_from(seq, limit, conn):
            yield entry_from_row(self.device, row)

    def __iter__(self) -> Iterator[Entry]:
        return self.read_from(1)

    def key_announcement_before(
        self, seq: int, conn: sqlite3.Connection | None = None
    ) -> str | None:
        """The stored body of the newest ``init`` or ``key_rotate`` entry before
        ``seq``: it names the key that signs entry ``seq``."""
        db = conn or self.conn
        row = db.execute(
            "SELECT body FROM journal WHERE kind IN ('init', ?) AND seq < ? "
            "ORDER BY seq DESC LIMIT 1",
            (Kind.KEY_ROTATE, seq),
        ).fetchone()
        return None if row is None else row[0]

    # -- what the projection and the counter ask ---------------------------------

    def net_change_after(
        self, seq: int, accounts: Iterable[str], conn: sqlite3.Connection | None = None
    ) -> int:
        """The net points (``effects.delta - effects.expired``) the entries after
        ``seq`` recorded for any of ``accounts`` (``agent.till_view``)."""
        listed = list(accounts)
        marks = ", ".join("?" for _ in listed)
        db = conn or self.conn
        row = db.execute(
            "SELECT COALESCE(SUM(json_extract(body, '$.effects.delta') "  # noqa: S608 (placeholders)
            "- json_extract(body, '$.effects.expired')), 0) FROM journal "
            f"WHERE seq > ? AND {_ENTRY_ACCOUNT} IN ({marks})",
            (seq, *listed),
        ).fetchone()
        return int(row[0])

    def offer_take(
        self, offer_id: str, conn: sqlite3.Connection | None = None
    ) -> tuple[int, str] | None:
        """``(seq, receipt)`` of the ``offer_take`` entry of ``offer_id``, if any
        (through the partial index ``journal_offer_take``, ``agent.offers``)."""
        db = conn or self.conn
        row = db.execute(
            "SELECT seq, json_extract(body, '$.receipt') FROM journal "
            "WHERE kind = 'offer_take' AND json_extract(body, '$.offer_id') = ?",
            (offer_id,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def offers_taken(
        self, offer_ids: Iterable[str], conn: sqlite3.Connection | None = None
    ) -> set[str]:
        """Which of ``offer_ids`` an ``offer_take`` entry took."""
        db = conn or self.conn
        rows = db.execute(
            "SELECT json_extract(body, '$.offer_id') FROM journal WHERE kind = 'offer_take' "
            "AND json_extract(body, '$.offer_id') IN (SELECT value FROM json_each(?))",
            (json.dumps(list(offer_ids)),),
        )
        return {str(row[0]) for row in rows}

    def suggestion_answer(
        self, suggestion_id: str, conn: sqlite3.Connection | None = None
    ) -> tuple[int, str] | None:
        """``(seq, outcome)`` of the ``suggestion_answer`` entry of ``suggestion_id``,
        if any (through the partial index ``journal_suggestion_answer``,
        ``agent.suggestions``)."""
        db = conn or self.conn
        row = db.execute(
            "SELECT seq, json_extract(body, '$.outcome') FROM journal "
            "WHERE kind = 'suggestion_answer' AND json_extract(body, '$.suggestion') = ?",
            (suggestion_id,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def suggestions_answered(
        self, suggestion_ids: Iterable[str], conn: sqlite3.Connection | None = None
    ) -> set[str]:
        """Which of ``suggestion_ids`` a ``suggestion_answer`` entry answered."""
        db = conn or self.conn
        rows = db.execute(
            "SELECT json_extract(body, '$.suggestion') FROM journal "
            "WHERE kind = 'suggestion_answer' "
            "AND json_extract(body, '$.suggestion') IN (SELECT value FROM json_each(?))",
            (json.dumps(list(suggestion_ids)),),
        )
        return {str(row[0]) for row in rows}

    def consent_withdrawn(self, member_id: str, conn: sqlite3.Connection | None = None) -> bool:
        """Whether the member's latest ``consent`` entry here withdrew it (through the
        partial index ``journal_consent``)."""
        db = conn or self.conn
        row = db.execute(
            "SELECT json_extract(body, '$.marketing') FROM journal WHERE kind = 'consent' "
            "AND json_extract(body, '$.member_id') = ? ORDER BY seq DESC LIMIT 1",
            (member_id,),
        ).fetchone()
        return row is not None and int(row[0]) == 0

    def offer_bonus_on(self, receipt: str, conn: sqlite3.Connection | None = None) -> int:
        """Points the ``offer_take`` entries on ``receipt`` credited."""
        db = conn or self.conn
        row = db.execute(
            "SELECT COALESCE(SUM(json_extract(body, '$.points')), 0) FROM journal "
            "WHERE kind = 'offer_take' AND json_extract(body, '$.receipt') = ?",
            (receipt,),
        ).fetchone()
        return int(row[0])
