"""Helpers for the sync and HQ tests: real HQ databases (SQLite and PostgreSQL),
a real HQ server process on loopback, tills in tmp_path, and the CLI in-process.

Every process, port, schema and database made here is removed by the fixture or
context manager that made it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.chain import Entry
from agent.ledger import Ledger
from agent.store import Store
from sync.hq.db import HQStore
from sync.hq.devices import add_device, init_hq, register
from sync.hq.stores import open_store
from sync.protocol import Batch
from sync.till_register import adopt_phone, registration_request
from tillpoints.bench_hq import free_port, hq_serve_command
from tillpoints.cli import main

REPO = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("TILLPOINTS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- databases ------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def hq_key_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where a PostgreSQL HQ made by a test keeps its key file (sync.hq.keyfile):
    in the session's temporary directory, not the user's ~/.local/state."""
    home = tmp_path_factory.mktemp("hq-keys")
    before = os.environ.get("TILLPOINTS_HQ_STATE")
    os.environ["TILLPOINTS_HQ_STATE"] = str(home)
    yield home
    if before is None:
        os.environ.pop("TILLPOINTS_HQ_STATE", None)
    else:
        os.environ["TILLPOINTS_HQ_STATE"] = before


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    psycopg = pytest.importorskip("psycopg")
    name = f"tp_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(f"{PG_BASE}/test", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is unreachable at {PG_BASE}: {error}")
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        with psycopg.connect(f"{PG_BASE}/test", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def pg_schema(database: str) -> Iterator[str]:
    """A schema of its own per test: a URL whose search_path points at it."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{database}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An initialised HQ database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/hq.db"
        _init(url)
        yield url
        return
    database = request.getfixturevalue("pg_database")
    with pg_schema(database) as url:
        _init(url)
        yield url


def _init(url: str) -> None:
    store = open_store(url)
    try:
        init_hq(store)
    finally:
        store.close()


@pytest.fixture
def hq_store(db_url: str) -> Iterator[HQStore]:
    store = open_store(db_url)
    yield store
    store.close()


# -- tills ----------------------------------------------------------------------------


def make_till(root: Path, name: str, store: str = "S001", till: str = "T01") -> Path:
    state = root / name
    Ledger.init(state, store, till).close()
    return state


def bind(hq: HQStore, state: Path) -> str:
    """Register a till with HQ in-process (what `register` sends over HTTP)."""
    ledger = Ledger(state)
    try:
        device, store_id, till = ledger.device_id, ledger.store_id, ledger.till_id
    finally:
        ledger.close()
    token = add_device(hq, store_id, till, utc_now())["token"]
    request = registration_request(state, token, device, store_id, till)
    from sync.hq.devices import hq_key

    receipt = register(hq, hq_key(hq), request, utc_now())["document"]
    opened = Store(state / "ledger.db")
    try:
        adopt_phone(state, opened, receipt)  # the chain's phone pepper, as `register` keeps it
    finally:
        opened.close()
    return device


def entries_of(state: Path) -> list[Entry]:
    ledger = Ledger(state)
    try:
        return list(ledger.entries())
    finally:
        ledger.close()


def batch_of(entries: list[Entry]) -> Batch:
    return Batch(entries[0].device, tuple(entries))


def journal_points(*states: Path) -> int:
    """Sum of every entry's balance change over the tills' own journals."""
    return sum(
        entry.body["effects"]["delta"] - entry.body["effects"]["expired"]
        for state in states
        for entry in entries_of(state)
        if "effects" in entry.body
    )


def hq_points(hq: HQStore) -> int:
    with hq.read() as tx:
        row = tx.one("SELECT COALESCE(SUM(delta - expired), 0) FROM entries")
    return int(row[0]) if row else 0


def hq_count(hq: HQStore, device: str | None = None) -> tuple[int, int]:
    """(rows, distinct (device, seq)) stored at HQ: equal means no duplicate."""
    where, params = ("WHERE device = ?", (device,)) if device else ("", ())
    with hq.read() as tx:
        row = tx.one(
            f"SELECT COUNT(*), COUNT(DISTINCT device || ':' || seq) FROM entries {where}", params
        )
    assert row is not None
    return int(row[0]), int(row[1])


def busy_till(state: Path, earns: int, *, enrol: bool = True, phone: str = "0611111111") -> str:
    """Enrol a member (or not) and record some earnings; returns the member id."""
    ledger = Ledger(state)
    try:
        member = ledger.enrol(name="Ann", phone=phone).member_id if enrol else None
        if member is None:
            member = ledger.store.conn.execute("SELECT member_id FROM members").fetchone()[0]
        for _ in range(earns):
            ledger.earn(member, f"R{secrets.token_hex(4)}", amount=1234)
        return str(member)
    finally:
        ledger.close()


# -- the command line, in-process -------------------------------------------------------


def cli(state: Path | None, *args: str) -> tuple[int, dict[str, Any]]:
    argv = ["--config", "/nonexistent/tillpoints.toml"]
    if state is not None:
        argv += ["--state", str(state)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*argv, *args, "--json"])
    text = out.getvalue().strip()
    return code, json.loads(text) if text else {}


# -- an HQ server process --------------------------------------------------------------


@dataclass
class HQServer:
    db_url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers die at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray workers, if any


def start_hq(
    db_url: str,
    log: Path,
    *,
    port: int | None = None,
    tls: tuple[Path, Path] | None = None,
    ca: Path | None = None,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> HQServer:
    port = port or free_port()
    command = hq_serve_command(db_url, port, workers=workers, threads=8)
    if tls is not None:
        command += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    server = HQServer(db_url, port, process, log, "https" if tls else "http")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hq serve exited: {log.read_text()[-2000:]}")
        try:
            requests.get(f"{server.url}/v1/health", timeout=1, verify=str(ca) if ca else True)
            return server
        except requests.RequestException:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("hq serve did not come up in 30 s")


@contextlib.contextmanager
def running_hq(db_url: str, log: Path, **options: Any) -> Iterator[HQServer]:
    server = start_hq(db_url, log, **options)
    try:
        yield server
    finally:
        server.stop()


def register_till(server: HQServer, hq: HQStore, state: Path, *extra: str) -> dict[str, Any]:
    ledger = Ledger(state)
    try:
        store_id, till = ledger.store_id, ledger.till_id
    finally:
        ledger.close()
    token = add_device(hq, store_id, till, utc_now())["token"]
    code, result = cli(state, "register", "--hq", server.url, "--token", token, *extra)
    assert code == 0, result
    return result


@contextlib.contextmanager
def two_stores(root: Path, url: str, log: Path) -> Iterator[tuple[HQServer, HQStore, Path, Path]]:
    """An initialised HQ at ``url`` serving on loopback, and two tills registered with
    it over HTTP: ``home`` (store S001) and ``away`` (S002), in ``root``."""
    _init(url)
    hq = open_store(url)
    try:
        with running_hq(url, log, workers=1) as server:
            home = make_till(root, "home", store="S001", till="T01")
            away = make_till(root, "away", store="S002", till="T01")
            for state in (home, away):
                register_till(server, hq, state)
            yield server, hq, home, away
    finally:
        hq.close()
