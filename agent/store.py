"""The till's SQLite file: durable settings, named forward migrations, transactions.

WAL with ``synchronous=FULL`` means a commit has reached the disk before the
cashier is told "points recorded". The busy timeout lets the agent, the command
line and the sync job share one file. Every business fact is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` (``Store.transaction``).

``Store`` owns the connection: outside this module, the journal's
(``agent.journal``) and the ledger's own (``agent.ledger``, ``agent.ledger_*``),
code reaches the file through its methods (a transaction, a snapshot, the journal,
the sync state, ...), never through ``Store.conn`` (tests/test_journal_owner.py
checks).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import LedgerError

if TYPE_CHECKING:
    # Imported for real only when a migration runs: sqlite-utils pulls in click,
    # dateutil and (when installed) numpy, which the running agent does not need.
    from sqlite_utils import Database
from agent.journal import Journal
from agent.keys import private_sqlite
from agent.offers import migrate_005_offers
from agent.privacy_tables import keys_of, migrate_007_privacy
from agent.suggestions import migrate_008_suggestions
from agent.sync_tables import migrate_002_sync, migrate_006_forget_phones

BUSY_TIMEOUT_MS = 10_000
# sync_state's key set by `tillpoints sync` when HQ's head shows this journal is a
# restored backup or a clone (sync.till_sync._report_fork); never cleared: every
# write is refused from then on (agent.ledger.restored_refusal).
RESTORED_KEY = "restored_from_backup"
# Less free space than this on the ledger's filesystem means a failed write was the
# disk filling up (SQLite reports a full disk as SQLITE_FULL or, when the WAL index
# cannot grow, as a plain "disk I/O error").
NEARLY_FULL_BYTES = 256 * 1024
# The WAL pages past which a commit checkpoints itself once a background
# checkpointer has the job (SQLite's default is 1,000): about 40 MiB.
HANDED_OVER_CHECKPOINT_PAGES = 10_000
DEFAULT_CHECKPOINT_PAGES = 1_000


def storage_error(error: sqlite3.Error | OSError, path: Path) -> LedgerError:
    """Name what went wrong with the ledger file: a full disk, a read-only
    filesystem, or something else. Always: nothing was recorded."""
    text = str(error)
    directory = path if path.is_dir() else path.parent
    try:
        free = shutil.disk_usage(directory).free
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        free, read_only = NEARLY_FULL_BYTES, False
    if "full" in text or free < NEARLY_FULL_BYTES:
        return LedgerError("disk_full", f"the disk holding {path} is full: nothing was recorded")
    if read_only or "readonly" in text or isinstance(error, PermissionError):
        return LedgerError("read_only", f"the ledger at {path} cannot be written: {text}")
    return LedgerError("storage_error", f"ledger storage failed, nothing was recorded: {text}")


def _m001_ledger(db: Database) -> None:
    # sqlite-utils types db[name] as Table | View; these are all tables.
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("journal").create(
        {
            "seq": int,
            "ts": str,
            "kind": str,
            "staff": str,
            "body": str,
            "prev_hash": str,
            "hash": str,
            "sig": str,
        },
        pk="seq",
        not_null=["ts", "kind", "body", "prev_hash", "hash", "sig"],
    )
    db.table("members").create(
        {
            "member_id": str,
            "name": str,
            "phone_key": str,
            "phone_last4": str,
            "birthday": str,
            "gender": str,
            "district": str,
            "household": int,
            "consent_marketing": int,
            "enrolled_at": str,
            "enrolled_store": str,
            "enrolled_till": str,
            "enrolled_by": str,
        },
        pk="member_id",
        not_null=["name"],
    )
    db.table("members").create_index(["phone_key"], unique=True)
    # account: a member id, or "C<card>" for a valid programme card not yet enrolled
    # here (earning works offline for any programme card).
    db.table("cards").create(
        {"card": str, "account": str, "state": str, "kind": str, "issued_at": str},
        pk="card",
        not_null=["account", "state", "kind"],
    )
    db.table("cards").create_index(["account"])
    db.table("receipts").create(
        {
            "op": str,
            "receipt": str,
            "account": str,
            "seq": int,
            "fingerprint": str,
            "result": str,
            "amount": int,
            "points": int,
            "returned": int,
            "refunded_amount": int,
            "day": str,
            # Receipt lines as JSON [[category, qty, amount, points, refunded_qty,
            # refunded_amount, refunded_points], ...]: one row per sale keeps an earn's
            # commit to few pages.
            "lines": str,
        },
        pk=("op", "receipt"),
        not_null=["account", "seq", "fingerprint", "day"],
    )
    # Rolling 12-month spend for tiers: net sales by account and day.
    db.table("receipts").create_index(["account", "day"])
    db.table("lots").create(
        {
            "lot_id": int,
            "account": str,
            "points": int,
            "used": int,
            "earned_on": str,
            "spendable_on": str,
            "expires_on": str,
            "expired": int,
        },
        pk="lot_id",
        not_null=["account", "points", "used", "expires_on"],
    )
    db.table("lots").create_index(["account", "expires_on"])
    # Points a refund took back after they were spent; later earnings pay them first.
    db.table("debts").create({"account": str, "points": int}, pk="account", not_null=["points"])
    db.table("lot_moves").create({"seq": int, "lot_id": int, "points": int}, pk=("seq", "lot_id"))


def _m003_staff(db: Database) -> None:
    """Staff ids, roles and PIN hashes (agent/staff.py), with failed-attempt counters."""
    db.table("staff").create(
        {
            "staff_id": str,
            "role": str,
            "pin_salt": str,
            "pin_hash": str,
            "failures": int,
            "locked_until": float,
            "lockouts": int,
        },
        pk="staff_id",
        not_null=["role", "pin_salt", "pin_hash", "failures", "locked_until", "lockouts"],
        defaults={"failures": 0, "locked_until": 0.0, "lockouts": 0},
    )


def _m004_remote_draws(db: Database) -> None:
    """Points a redemption drew beyond this till's own lots: spent from the balance HQ
    confirmed (earned at other stores). Kept per redemption so a refund can return
    them, and so that this till's lots - debts - remote draws = its journal's sum."""
    db.table("remote_draws").create(
        {"seq": int, "account": str, "points": int}, pk="seq", not_null=["account", "points"]
    )


# Named forward migrations, applied once each, in order, recorded in `migrations`.
MIGRATIONS: tuple[tuple[str, Callable[[Database], None]], ...] = (
    ("001_ledger", _m001_ledger),
    ("002_sync", migrate_002_sync),
    ("003_staff", _m003_staff),
    ("004_remote_draws", _m004_remote_draws),
    ("005_offers", migrate_005_offers),
    ("006_forget_phones", migrate_006_forget_phones),
    ("007_privacy", migrate_007_privacy),
    ("008_suggestions", migrate_008_suggestions),
)

PROJECTION_TABLES = (
    "members",
    "cards",
    "receipts",
    "lots",
    "lot_moves",
    "debts",
    "remote_draws",
)


class Store:
    """One connection to the ledger file, with explicit transactions."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        if not create and not path.exists():
            raise LedgerError("not_initialised", f"no ledger at {path}: run `tillpoints init`")
        self._after_commit: Callable[[], None] | None = None
        try:
            private_sqlite(path)
            self.conn = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA foreign_keys=ON")
            # Deleted personal data is overwritten in the file's pages (issue 17).
            self.conn.execute("PRAGMA secure_delete=ON")
            self.migrate()
        except sqlite3.DatabaseError as error:
            if "not a database" in str(error) or "malformed" in str(error):
                raise LedgerError(
                    "database_corrupt", f"{path} is not a readable ledger: {error}"
                ) from None
            raise storage_error(error, path) from None
        except OSError as error:
            raise storage_error(error, path) from None

    def close(self) -> None:
        self.conn.close()

    @staticmethod
    def make_schema(path: Path) -> None:
        """An empty ledger at ``path`` with every migration applied, checkpointed and
        closed: what ``copy_schema`` copies for each of a simulated chain's tills."""
        Store(path, create=True).close()

    @staticmethod
    def copy_schema(schema: Path, path: Path) -> None:
        """A new ledger file at ``path`` (it must not exist: made 0600 first) holding
        ``make_schema``'s empty migrated ledger: opening it finds every migration
        applied. A simulated chain's tills (``sync.hq.insight.simulate``) start so,
        instead of each running the migrations and their fsyncs (issue 18)."""
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        shutil.copyfile(schema, path)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: take the write lock first, so two writers never both
        read a journal head and then race to append after it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        if self._after_commit is not None:
            self._after_commit()

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A transaction that is always rolled back: reads that all see one state of
        the file (``sync``, another process, commits before or after them, never in
        between), or a trial that must leave nothing behind (``agent.audit``
        replays the projection in one and compares)."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def journal(self, device: str = "") -> Journal:
        """The journal (``agent.journal``) on this file's connection: its reads see
        what is committed, its appends go in the caller's transaction."""
        return Journal(self.conn, device)

    def sync_state(self, key: str) -> str | None:
        """One value `tillpoints sync` keeps (``agent.sync_tables``), or None."""
        row = self.conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def sync_states(self) -> dict[str, str]:
        """Every value `tillpoints sync` keeps, read at once."""
        states: dict[str, str] = dict(
            self.conn.execute("SELECT key, value FROM sync_state ORDER BY key").fetchall()
        )
        return states

    def has_members(self) -> bool:
        """Whether a member was ever enrolled here (registration keeps the till's own
        phone pepper then: ``agent.till_secrets``)."""
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM members)").fetchone()[0])

    def backup_to(self, target: sqlite3.Connection) -> None:
        """Copy the whole file into ``target`` (SQLite's online backup): the benches
        measure an earn's rows on a copy of a real ledger."""
        self.conn.backup(target)

    def member_keys(self, member_ids: list[str]) -> dict[str, bytes]:
        """The sealing keys this till holds of ``member_ids`` (``agent.privacy_tables``):
        what an upload carries beside the batch's enrolments."""
        return keys_of(self.conn, member_ids)

    def checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it: after an erasure (issue 17) the
        old pages must not live on in the WAL (``secure_delete`` overwrote the file's)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def hand_over_checkpoints(self, pages: int = HANDED_OVER_CHECKPOINT_PAGES) -> None:
        """A background checkpointer (``agent.checkpointer``) copies the WAL into the
        file from now on: this connection's commits checkpoint only past ``pages``,
        the backstop should that thread fall behind."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    def after_commit(self, hook: Callable[[], None] | None) -> None:
        """Call ``hook`` after each commit of ``transaction`` (the checkpointer counts
        them); ``None`` stops."""
        self._after_commit = hook

    def skip_fsync(self) -> None:
        """Commits stop waiting for the disk (``synchronous=OFF``). For a simulated
        chain only (``sync.hq.insight.simulate``), whose tills are thrown away: a
        till's ledger is never opened like this."""
        self.conn.execute("PRAGMA synchronous=OFF")

    def cache_kib(self, kib: int) -> None:
        """SQLite's page cache for this connection, in KiB (its default is 2 MB). A
        simulated chain's ledgers take a small one: a worker holds a hundred."""
        self.conn.execute(f"PRAGMA cache_size=-{int(kib)}")

    def migrate(self) -> None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, at TEXT)")
        applied = {row[0] for row in self.conn.execute("SELECT name FROM migrations")}
        if all(name in applied for name, _ in MIGRATIONS):
            return
        from sqlite_utils import Database

        db = Database(self.conn)
        for name, step in MIGRATIONS:
            with self.transaction() as conn:
                done = conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone()
                if done:
                    continue
                step(db)
                conn.execute(
                    "INSERT INTO migrations VALUES (?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                    (name,),
                )
        # What a migration deleted must not live on in the WAL's copies of its pages.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
