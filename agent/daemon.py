"""``tillpoints agent``: the till daemon.

One asyncio loop owns the readers, the local API and the events. Everything that
blocks (SQLite with fsync, Ed25519, scrypt) crosses into it through one bridge: a
single ledger thread, so ledger calls are serialised exactly as the file would
serialise them anyway. Reader threads hand scans over with
``call_soon_threadsafe``; nothing else touches the loop from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent import staff
from agent.api import router
from agent.config import Config
from agent.errors import LedgerError
from agent.events import EventHub
from agent.http import serve_connection
from agent.ledger import DB_FILE, Ledger
from agent.notify import Notifier
from drivers.errors import DriverError
from drivers.lifecycle import CONNECTED, ReaderState
from drivers.reader_base import ReaderThread
from drivers.registry import make_reader
from drivers.scan import Scan
from sync.chain import entry_hash, verify_chain
from sync.keys import load_public_key
from sync.rotation import KEY_ROTATE

logger = logging.getLogger("tillpoints.agent")
STOP_GRACE_S = 4.0
SYNC_POLL_S = 2.0


def open_checked(state_dir: Path, config: Config) -> Ledger:
    """Open the ledger only if it is whole: never start on an empty or corrupt one."""
    path = state_dir / DB_FILE
    if not path.exists():
        raise LedgerError(
            "not_initialised", f"no till ledger at {path}: run `tillpoints init` first"
        )
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = probe.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            probe.close()
    except sqlite3.DatabaseError as error:
        raise LedgerError("database_corrupt", f"{path} is not a readable ledger: {error}") from None
    if verdict != "ok":
        raise LedgerError("database_corrupt", f"{path} failed its integrity check: {verdict}")
    ledger = Ledger(state_dir, config)
    try:
        _check_head(ledger)
    except BaseException:
        ledger.close()
        raise
    return ledger


def _check_head(ledger: Ledger) -> None:
    """The newest entry must verify and match the recorded head (a quick check; the
    whole chain is `log verify`'s job)."""
    seq, head = ledger.head()
    if seq == 0:
        raise LedgerError(
            "database_corrupt", "the journal is empty: the ledger was not initialised"
        )
    entry = ledger.entry_at(seq)
    if entry is None:
        raise LedgerError("database_corrupt", f"journal head {seq} is missing")
    if entry.kind == KEY_ROTATE:
        # Signed by the key it retires, which is no longer on record: check that the
        # entry is whole and hands over to the key on record (`log verify` checks the
        # signature by walking the chain).
        whole = entry_hash(entry) == entry.hash
        reason = (
            None
            if whole and entry.body.get("public_key") == ledger.public_key
            else ("key rotation entry does not match the key on record")
        )
    else:
        report = verify_chain(
            [entry],
            load_public_key(ledger.public_key),
            device=ledger.device_id,
            start_seq=seq,
            start_prev=entry.prev,
        )
        reason = report.reason
    if reason is None and ledger.store.meta("head") != f"{seq}:{head}":
        reason = "the recorded head differs"
    if reason is not None:
        raise LedgerError(
            "database_corrupt",
            f"journal head {seq} does not verify ({reason}): run `tillpoints log verify`",
        )


class TillAgent:
    def __init__(
        self,
        state_dir: Path,
        config: Config,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir, self.config = state_dir, config
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.hub = EventHub()
        self.readers: list[ReaderThread] = []
        self.started_at = clock()
        self.last_scan_at: float | None = None
        self._bridge = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._loop: asyncio.AbstractEventLoop | None = None
        # Connections being served and scans being looked up: drained on SIGTERM.
        self._tasks: set[asyncio.Task[None]] = set()
        self.ledger: Ledger

    # -- the bridge ----------------------------------------------------------------

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._bridge, lambda: function(*args, **kwargs))

    async def authorise(self, body: dict[str, Any], role: str) -> str:
        return str(
            await self.call(
                staff.authorise, self.ledger.store, body.get("staff"), body.get("pin"), role
            )
        )

    # -- status ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return {
            **await self.call(ledger_status, self.ledger, self.clock()),
            "readers": [reader.health().to_json() for reader in self.readers],
            "last_scan_at": self.last_scan_at,
            "started_at": self.started_at,
            "agent": "running",
        }

    # -- readers -----------------------------------------------------------------------

    def _start_readers(self) -> None:
        for config in self.config.readers:
            settings = config.decoder_settings(self.config.cards, self.config.qr_secret)
            reader = make_reader(
                config, self._scan_from_thread, settings=settings, on_state=self._state_from_thread
            )
            self.readers.append(reader)
            reader.start()

    def _scan_from_thread(self, scan: Scan) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._scan_arrived, scan)

    def _state_from_thread(self, path: str, state: ReaderState) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reader_changed, path, state)

    def _reader_changed(self, path: str, state: ReaderState) -> None:
        if state in CONNECTED:
            self.hub.publish("reader", {"path": path, "state": "connected"})
        elif state is ReaderState.LOST:
            self.hub.publish("reader", {"path": path, "state": "lost"})
        logger.info("reader %s is %s", path, state.value)

    def _scan_arrived(self, scan: Scan) -> None:
        self.last_scan_at = self.clock()
        task = asyncio.get_running_loop().create_task(self._publish_scan(scan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_scan(self, scan: Scan) -> None:
        data: dict[str, Any] = dict(scan.to_json())
        if scan.kind == "member" and scan.card is not None:
            try:
                member = await self.call(self.ledger.member, scan.card)
            except LedgerError as refusal:
                data["refused"] = refusal.as_json()
            else:
                if member.get("member_id") is not None:
                    data["member"] = member
        self.hub.publish("scan", data)

    # -- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, stop.set)
        self.ledger = await self.call(open_checked, self.state_dir, self.config)
        server = await self._listen()
        watchdog = self._loop.create_task(self._watchdog())
        sync_watch = self._loop.create_task(self._watch_sync())
        try:
            self._start_readers()
            self.notifier.ready(f"serving {self.config.socket} with {len(self.readers)} reader(s)")
            logger.info("ready on %s", self.config.socket)
            await stop.wait()
        finally:
            self.notifier.stopping()
            logger.info("stopping")
            watchdog.cancel()
            sync_watch.cancel()
            server.close()
            self.hub.close()
            await self._drain()
            await asyncio.gather(
                *(asyncio.to_thread(reader.stop) for reader in self.readers),
                return_exceptions=True,
            )
            self._bridge.shutdown(wait=True)
            self.ledger.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.socket)

    async def _listen(self) -> asyncio.Server:
        path = Path(self.config.socket)
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise LedgerError("socket_path", f"socket: {path} exists and is not a socket")
                path.unlink()
            old_umask = os.umask(0o117)
            try:
                server = await asyncio.start_unix_server(self._connection, path=str(path))
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o660)
        except OSError as error:
            raise LedgerError("socket_path", f"socket: cannot listen on {path}: {error}") from None
        return server

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await serve_connection(reader, writer, router(self))
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _drain(self) -> None:
        """Let requests already inside finish (their answers are acknowledgements),
        then cut whatever is still open."""
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in still:
                task.cancel()

    async def _watch_sync(self) -> None:
        """`tillpoints sync` runs as its own process (the timer); tell the UI and the
        POS when it has moved the till's sync state, as `event: sync`."""
        seen: tuple[Any, ...] | None = None
        while True:
            marks = await self.call(sync_marks, self.ledger)
            if seen is not None and marks != seen:
                status = await self.call(ledger_status, self.ledger, self.clock())
                self.hub.publish("sync", {key: status[key] for key in ("unsynced", "last_sync")})
            seen = marks
            await asyncio.sleep(SYNC_POLL_S)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_s
        if not interval:
            return
        while True:
            # Proves the loop *and* the ledger thread are alive, not just the process.
            await self.call(lambda: None)
            self.notifier.watchdog()
            await asyncio.sleep(interval / 2)


def sync_marks(ledger: Ledger) -> tuple[Any, ...]:
    """What a finished sync changes: HQ's acknowledged head and its last delta."""
    rows = ledger.store.conn.execute(
        "SELECT key, value FROM sync_state WHERE key IN ('acked_seq', 'last_download') ORDER BY key"
    ).fetchall()
    return tuple(rows)


def ledger_status(ledger: Ledger, now: float) -> dict[str, Any]:
    """What `status` reports about the ledger: journal head and size, entries not yet
    acknowledged by HQ, the last sync, and whether the clock looks sane."""
    conn = ledger.store.conn
    seq, head = ledger.head()
    synced = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
    acked = int(synced.get("acked_seq") or 0)
    last_ts = conn.execute("SELECT ts FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    last_entry = dt.datetime.fromisoformat(last_ts[0]).timestamp() if last_ts else 0.0
    # A clock behind the newest entry (with 5 minutes of slack) has been set back.
    clock_ok = now >= last_entry - 300 and now > dt.datetime(2024, 1, 1).timestamp()
    size = (ledger.state_dir / DB_FILE).stat().st_size
    wal = ledger.state_dir / (DB_FILE + "-wal")
    return {
        "store": ledger.store_id,
        "till": ledger.till_id,
        "device_id": ledger.device_id,
        "journal_head": {"seq": seq, "hash": head},
        "journal_bytes": size + (wal.stat().st_size if wal.exists() else 0),
        "unsynced": seq - acked,
        # When HQ last answered with a delta (HQ's clock, ISO 8601 with offset).
        "last_sync": synced.get("last_download"),
        "clock_ok": clock_ok,
        "clock": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
    }


def run_agent(state_dir: Path, config: Config) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        asyncio.run(TillAgent(state_dir, config).run())
    except DriverError as error:
        raise LedgerError(error.code, error.message) from None
