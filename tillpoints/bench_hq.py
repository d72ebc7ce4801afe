"""Benchmark hooks for ``tillpoints bench`` (sync and HQ figures).

Each returns ``{"value", "unit", "limit", "ratio"}``. Entries are generated with
``agent.chain.sign_entry`` directly (real signatures and hashes, the shape of a
till's ``earn`` entries) rather than through the ledger, which would measure the
ledger instead of sync; they are written into a real till's journal table where
a real ``sync`` must read them. Everything runs on loopback and in temporary
directories or a scratch PostgreSQL schema that is dropped afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.chain import Entry, sign_entry
from agent.entries import Earn, Kind, Lot, SaleLine
from agent.journal import row_of
from agent.keys import device_id_for, public_key_text
from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.devices import add_device, hq_key, init_hq
from sync.hq.ingest import ENTRY_COLUMNS, entry_row, ingest
from sync.hq.stores import open_store
from sync.protocol import Batch

Figure = dict[str, Any]


def _figure(value: float, unit: str, limit: float | None = None) -> Figure:
    """A figure; ``limit`` is the raw limit measured in the same run, where one exists."""
    figure: Figure = {"value": round(value, 3), "unit": unit}
    if limit:
        figure.update(limit=round(limit, 1), ratio=round(value / limit, 3))
    return figure


def signed_entries(
    key: Ed25519PrivateKey, count: int, start_seq: int = 1, prev: str = "0" * 64
) -> list[Entry]:
    """``count`` chained ``earn`` entries signed by ``key``, with the body a till
    writes (``agent.entries.Earn``): HQ reads every field of it at ingest."""
    device = device_id_for(key.public_key())
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    entries = []
    for offset in range(count):
        seq = start_seq + offset
        member = f"{device}-{seq % 500 + 1}"
        body = Earn(
            account=member,
            member_id=member,
            card=None,
            receipt=f"B{seq}",
            fingerprint="0" * 64,
            lines=(SaleLine(category="total", qty=1, amount=1250, points=12),),
            amount=1250,
            points=12,
            tier="base",
            day="2026-01-01",
            lot=Lot(spendable_on="2026-01-01", expires_on="2028-01-01"),
            effects={"delta": 12, "expired": 0},
        ).to_body()
        ts = (base + dt.timedelta(seconds=seq * 29)).isoformat(timespec="milliseconds")
        entry = sign_entry(
            key, device=device, seq=seq, ts=ts, kind=Kind.EARN, staff=None, body=body, prev=prev
        )
        entries.append(entry)
        prev = entry.hash
    return entries


@contextlib.contextmanager
def scratch_db(url: str | None) -> Iterator[str]:
    """A fresh HQ database: a temporary SQLite file, or a throwaway schema."""
    if url is None or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as root:
            yield f"sqlite:///{root}/hq.db"
        return
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        joiner = "&" if "?" in url else "?"
        yield f"{url}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _bind(store: HQStore, key: Ed25519PrivateKey) -> str:
    """Register a device directly in HQ's tables (the bench measures ingest)."""
    device = device_id_for(key.public_key())
    text = public_key_text(key.public_key())
    with store.write() as tx:
        tx.run(
            "INSERT INTO devices (device, store, till, public_key, current_key, transport_key, "
            "state, head_seq, head_hash, registered_at) VALUES (?, 'B', ?, ?, ?, ?, 'bound', 0, "
            "?, '2026-01-01T00:00:00Z')",
            (device, device, text, text, text, "0" * 64),
        )
    return device


def hq_ingest_entries_per_s(
    backend_url: str | None = None, count: int = 20_000, rounds: int = 5
) -> Figure:
    """HQ's verified, exactly-once ingest rate, and its ratio to a raw bulk insert
    of the same rows into the same backend in the same run.

    Each round ingests ``count`` entries into a fresh HQ, 500 to a batch, each batch
    in its own transaction as an upload stores it; the raw limit is one
    ``executemany`` transaction of the same rows into an unindexed copy of
    ``entries``. The two are interleaved batch by batch (the raw transaction stays
    open on a second connection, to a second file of the same directory on SQLite,
    while HQ commits each batch), so a change in the machine's load touches both
    sides alike; the figure is the round with the median ratio (``rounds``: every
    round's ratio)."""
    key = Ed25519PrivateKey.generate()
    entries = signed_entries(key, count)
    rows = [entry_row(entry) for entry in entries]
    measured = sorted(
        (_ingest_round(backend_url, key, entries, rows, flip=bool(n % 2)) for n in range(rounds)),
        key=lambda pair: pair[1] / pair[0],
    )
    ingest_s, raw_s = measured[len(measured) // 2]
    figure = _figure(count / ingest_s, "entries/s", count / raw_s)
    figure["rounds"] = [round(raw / ingested, 3) for ingested, raw in measured]
    return figure


def _ingest_round(
    backend_url: str | None,
    key: Ed25519PrivateKey,
    entries: list[Entry],
    rows: list[tuple[Any, ...]],
    *,
    flip: bool,
) -> tuple[float, float]:
    """One round: (seconds HQ's ingest took, seconds the raw insert took). ``flip``
    swaps which side goes first in each pair of batches."""
    marks = ", ".join("?" for _ in ENTRY_COLUMNS)
    insert = f"INSERT INTO bench_raw VALUES ({marks})"  # noqa: S608 (placeholders)
    with scratch_db(backend_url) as url:
        store = open_store(url)
        # A second connection: to a second file beside HQ's on SQLite (one writer a
        # file), to the same schema on PostgreSQL.
        raw = open_store(url.replace("/hq.db", "/raw.db"))
        try:
            init_hq(store)
            with raw.write() as tx:
                tx.run("CREATE TABLE bench_raw AS SELECT * FROM entries WHERE 1 = 0")
            signer, device = hq_key(store), _bind(store, key)
            now = dt.datetime.now(dt.UTC)
            spent = {"ingest": 0.0, "raw": 0.0}
            began = time.perf_counter()
            with raw.write() as raw_tx:
                spent["raw"] += time.perf_counter() - began  # its BEGIN
                for n, start in enumerate(range(0, len(entries), 500)):
                    batch = Batch(device, tuple(entries[start : start + 500]))
                    chunk = rows[start : start + 500]
                    order = ("ingest", "raw") if (n % 2 == 0) != flip else ("raw", "ingest")
                    for side in order:
                        began = time.perf_counter()
                        if side == "ingest":
                            ingest(store, signer, device, batch, now, now)
                        else:
                            raw_tx.many(insert, chunk)
                        spent[side] += time.perf_counter() - began
                began = time.perf_counter()
            spent["raw"] += time.perf_counter() - began  # its COMMIT
        finally:
            raw.close()
            store.close()
    return spent["ingest"], spent["raw"]


# -- over loopback ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hq_serve_command(
    url: str, port: int, *, workers: int, threads: int, key: Path | None = None
) -> list[str]:
    """``tillpoints hq serve`` on loopback, as this interpreter runs it."""
    return [
        sys.executable,
        "-m",
        "tillpoints.cli",
        "hq",
        "serve",
        "--db",
        url,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        *(() if key is None else ("--key", str(key))),
    ]


@contextlib.contextmanager
def hq_server(
    url: str, root: Path, workers: int = 2, threads: int = 16, key: Path | None = None
) -> Iterator[str]:
    """``hq serve`` on a free loopback port until the block ends (its log in ``root``)."""
    import requests

    port = free_port()
    command = hq_serve_command(url, port, workers=workers, threads=threads, key=key)
    with (root / "hq.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/v1/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _till_with_entries(root: Path, name: str, count: int) -> Path:
    """A real till whose journal holds ``count`` generated entries after ``init``."""
    from agent.keys import read_private_key
    from agent.ledger import Ledger

    state = root / name
    ledger = Ledger.init(state, "B", name)
    head_seq, head_hash = ledger.head()
    ledger.close()
    key = read_private_key(state / "device.key")
    entries = signed_entries(key, count, head_seq + 1, head_hash)
    ledger = Ledger(state)
    with ledger.store.transaction() as conn:  # the rows and the recorded head
        ledger.journal.copy_in(conn, [row_of(entry) for entry in entries])
    ledger.close()
    return state


def _register(state: Path, store: HQStore, base: str) -> None:
    from sync.till_register import register_till

    token = add_device(store, "B", state.name, dt.datetime.now(dt.UTC))["token"]
    register_till(state, base, token)


@contextlib.contextmanager
def _loopback_hq(tills: int, entries: int) -> Iterator[tuple[list[Path], HQStore, str]]:
    """A temporary HQ served on loopback and ``tills`` registered tills with
    ``entries`` unsynced entries each."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root}/hq.db"
        store = open_store(url)
        try:
            init_hq(store)
            states = [_till_with_entries(root, f"T{n}", entries) for n in range(tills)]
            with hq_server(url, root) as base:
                for state in states:
                    _register(state, store, base)
                yield states, store, base
        finally:
            store.close()


def catch_up_30_days_s(per_day: int = 3_000, days: int = 30) -> Figure:
    """A till offline for 30 days (90,000 entries) uploads and HQ ingests them."""
    from sync.till_sync import sync_till

    with _loopback_hq(1, per_day * days) as (states, _, _):
        started = time.perf_counter()
        sync_till(states[0])
        elapsed = time.perf_counter() - started
    return _figure(elapsed, "s")


def concurrent_tills_200_errors(tills: int = 200, entries: int = 50) -> Figure:
    """``tills`` tills syncing at the same moment; counts the syncs that failed."""
    from sync.till_sync import sync_till

    errors: list[str] = []
    with _loopback_hq(tills, entries) as (states, _, _):
        gate = threading.Barrier(tills)

        def one(state: Path) -> None:
            gate.wait()
            try:
                sync_till(state)
            except SyncError as error:
                errors.append(error.code)

        threads = [threading.Thread(target=one, args=(s,)) for s in states]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return _figure(len(errors), f"errors of {tills} tills")
