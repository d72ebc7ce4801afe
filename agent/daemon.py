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
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent import staff
from agent.api import earn_on_bridge, router
from agent.chain import ChainReport
from agent.config import Config
from agent.errors import LedgerError
from agent.events import EventHub
from agent.http import FixedRoute, serve_connection
from agent.integrity import JournalDamaged, check_unsynced
from agent.keys import public_key_text
from agent.ledger import DB_FILE, Ledger
from agent.notify import Notifier
from agent.results import MemberView
from agent.till_secrets import TillSecrets
from drivers.errors import DriverError
from drivers.lifecycle import CONNECTED, ReaderState
from drivers.reader_base import ReaderThread
from drivers.registry import make_reader
from drivers.scan import Scan

logger = logging.getLogger("tillpoints.agent")
STOP_GRACE_S = 4.0
SYNC_POLL_S = 2.0


def open_checked(state_dir: Path, config: Config) -> Ledger:
    """Open the ledger only if it is whole: never start on an empty or corrupt one.
    A journal that does not verify from HQ's acknowledged entry to its recorded
    head opens for reading only (``check_journal``)."""
    path = _ledger_path(state_dir)
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
        if ledger.head()[0] == 0:
            raise LedgerError(
                "database_corrupt", "the journal is empty: the ledger was not initialised"
            )
        started = time.perf_counter()
        check_journal(ledger)
        logger.info("journal checked in %.2f s", time.perf_counter() - started)
    except BaseException:
        ledger.close()
        raise
    return ledger


def _ledger_path(state_dir: Path) -> Path:
    path = state_dir / DB_FILE
    if not path.exists():
        raise LedgerError(
            "not_initialised", f"no till ledger at {path}: run `tillpoints init` first"
        )
    return path


def check_journal(ledger: Ledger) -> None:
    """Check the part of the journal HQ does not hold yet, and the recorded head
    (``agent.integrity``); if it does not verify, refuse every write from now on
    (``journal_unverified``) and say why in ``status``. Reads go on working: a
    member can still be looked up while the damage is investigated."""
    with ledger.store.snapshot() as conn:
        report = check_unsynced(conn)
    if report.ok and public_key_text(ledger.key.public_key()) != ledger.public_key:
        report = ChainReport(
            False,
            0,
            report.head,
            report.head_seq,
            report.head_seq,
            "device.key is not the key on record",
        )
    if report.ok:
        ledger.write_refusal = None
        return
    ledger.write_refusal = JournalDamaged(
        "journal_unverified",
        f"the journal does not verify at entry {report.first_bad_seq}: {report.reason}. "
        "Nothing can be recorded until it is repaired; run `tillpoints log verify`",
        {"first_bad_seq": report.first_bad_seq, "reason": report.reason},
    )
    logger.error("%s", ledger.write_refusal.message)


def _qr_source(secrets: TillSecrets) -> Callable[[], bytes | None]:
    """The chain's QR secret for one reader thread, read again when the secrets
    file changes (a registration while the agent runs); a broken file turns
    dynamic codes off (``qr_not_configured``) and is logged, the reader goes on."""

    def current() -> bytes | None:
        try:
            return secrets.qr()
        except LedgerError as error:
            logger.error("dynamic codes off: %s", error.message)
            return None

    return current


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
        self._socket_id: tuple[int, int] | None = None
        # A POS's earn, answered whole on the bridge (agent.http.FixedRoute).
        self._fixed = FixedRoute(self._bridge, lambda request: earn_on_bridge(self.ledger, request))

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
            source = _qr_source(TillSecrets(self.state_dir))
            settings = config.decoder_settings(self.config.cards, qr_source=source)
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
                member: MemberView = await self.call(self.ledger.member, scan.card)
            except LedgerError as refusal:
                data["refused"] = refusal.as_json()
            else:
                if member.member_id is not None:
                    data["member"] = member.as_json()
        self.hub.publish("scan", data)

    # -- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, stop.set)
        lock = hold_state_lock(self.state_dir)
        try:
            await self._serve(stop)
        finally:
            os.close(lock)  # the lock goes with it; the file stays (never unlink a lock)

    async def _serve(self, stop: asyncio.Event) -> None:
        assert self._loop is not None
        self.ledger = await self.call(open_checked, self.state_dir, self.config)
        await self.call(self.ledger.start_checkpointer)
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
            self._unlink_own_socket()

    async def _listen(self) -> asyncio.Server:
        path = Path(self.config.socket)
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise LedgerError("socket_path", f"socket: {path} exists and is not a socket")
                if _served(path):
                    raise LedgerError(
                        "socket_in_use",
                        f"socket: {path} is served by another live agent (another state "
                        "directory configured with the same socket?); not taking it over",
                    )
                path.unlink()
            old_umask = os.umask(0o117)
            try:
                server = await asyncio.start_unix_server(self._connection, path=str(path))
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o660)
            made = path.lstat()
            self._socket_id = (made.st_dev, made.st_ino)
        except OSError as error:
            raise LedgerError("socket_path", f"socket: cannot listen on {path}: {error}") from None
        return server

    def _unlink_own_socket(self) -> None:
        """Remove the socket file only if it is still the one this agent made."""
        path = Path(self.config.socket)
        with contextlib.suppress(OSError):
            now = path.lstat()
            if (now.st_dev, now.st_ino) == self._socket_id:
                path.unlink()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await serve_connection(reader, writer, router(self), self._fixed)
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


LOCK_FILE = "agent.lock"


def hold_state_lock(state_dir: Path) -> int:
    """Lock the state directory for this agent's life (``flock`` on ``agent.lock``,
    0600, holding the agent's pid); the kernel drops it when the process ends, so
    a crash leaves no stale lock. A second agent on the same state stops here,
    before it opens the ledger or touches the socket."""
    _ledger_path(state_dir)
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise LedgerError("state_lock", f"cannot open {path}: {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise LedgerError(
            "agent_running",
            f"another tillpoints agent (pid {holder}) is running on {state_dir} (it holds "
            f"{path}); stop it first. This one exits without touching its socket",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def _served(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False  # a socket file left by an agent that is gone
    except OSError:
        return True  # cannot tell (permissions, a busy listener): leave it alone
    finally:
        probe.close()
    return True


def sync_marks(ledger: Ledger) -> tuple[Any, ...]:
    """What a finished sync changes: HQ's acknowledged head and its last delta."""
    synced = ledger.store.sync_states()
    return tuple((key, synced[key]) for key in ("acked_seq", "last_download") if key in synced)


def ledger_status(ledger: Ledger, now: float) -> dict[str, Any]:
    """What `status` reports about the ledger: journal head and size, entries not yet
    acknowledged by HQ, the last sync, and whether the clock looks sane."""
    seq, head = ledger.head()
    synced = ledger.store.sync_states()
    acked = int(synced.get("acked_seq") or 0)
    last = ledger.journal.last_row()
    last_entry = dt.datetime.fromisoformat(last[1]).timestamp() if last else 0.0
    # A clock behind the newest entry (with 5 minutes of slack) has been set back.
    clock_ok = now >= last_entry - 300 and now > dt.datetime(2024, 1, 1).timestamp()
    size = (ledger.state_dir / DB_FILE).stat().st_size
    refusal = ledger.refusal()
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
        # False when the start-up check failed or `sync` found the till restored or
        # cloned: every write is refused, and why.
        "journal_ok": refusal is None,
        **({"journal_problem": refusal.as_json()} if refusal else {}),
    }


def run_agent(state_dir: Path, config: Config) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        asyncio.run(TillAgent(state_dir, config).run())
    except DriverError as error:
        raise LedgerError(error.code, error.message) from None
