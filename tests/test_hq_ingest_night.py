"""A chain's night at HQ (``tillpoints.bench_night``): tills upload at once over real
HTTP, into SQLite and PostgreSQL, and every entry is stored exactly once.

Also the fast paths the night needs, each checked against the slow one: entries
go into ``entries`` by ``Tx.copy`` (PostgreSQL's COPY) and come out as the
``INSERT`` of ``sync.hq.ingest.entry_row``'s rows would have stored them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.chain import Entry
from sync.client import HQClient, Signer
from sync.errors import SyncError
from sync.hq.audit import verify_all
from sync.hq.db import HQStore, Tx
from sync.hq.devices import add_device, hq_key, register
from sync.hq.ingest import ENTRY_COLUMNS, entry_row, ingest
from sync.protocol import Batch
from sync.till_register import proven_request
from sync.upload import Acked, read_answer
from tests import sync_helpers
from tests.sync_helpers import cli, utc_now
from tillpoints import bench_night as night
from tillpoints.bench_night import Night, NightTill

db_url = sync_helpers.db_url
hq_store = sync_helpers.hq_store
pg_database = sync_helpers.pg_database

EVENING = dt.datetime(2026, 12, 3, 18, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str | None:
    """What ``night.night_hq`` takes: None (SQLite) or a PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_database"))


def test_a_night_is_stored_once_and_verifies(backend: str | None) -> None:
    figures = night.chain_night(tills=5, entries=600, url=backend, concurrency=5)
    assert figures["chain_night_5_tills_s"]["value"] > 0
    assert figures["chain_night_errors"]["value"] == 0
    stored = figures["chain_night_entries_stored"]
    # 600 earns after each till's init, in batches of 500 and 101.
    assert stored["value"] == 5 * 601
    assert (stored["duplicates"], stored["heads_at_last_entry"]) == (0, 5)
    assert (stored["batches"], stored["alerts"]) == (10, 0)
    assert figures["chain_night_verify_s"]["ok"] is True


def _post(base: str, key: Any, till: NightTill, device: str, body: bytes) -> Any:
    client = HQClient(base, signer=Signer(device, _transport(till)))
    try:
        reply = client.post_wire(f"/v1/devices/{device}/batches", body, gzipped=True)
    finally:
        client.close()
    return read_answer(reply.status, reply.body, key)


def _transport(till: NightTill) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(till.transport_key)


def _at_once(count: int, work: Any) -> list[Any]:
    """``work()`` from ``count`` threads released together; their results."""
    gate, results = threading.Barrier(count), [None] * count

    def one(n: int) -> None:
        gate.wait()
        results[n] = work()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_replayed_upload_is_stored_once(backend: str | None) -> None:
    chain = night.chain_tills(2)
    nights = night.build_nights(chain, 600, EVENING, jobs=1)
    first, second = nights
    with night.night_hq(backend, chain) as (store, base, key):
        # The first till's night goes up; then its batches again, old and new,
        # and its last one from four threads at once.
        assert night.upload_night(base, key, chain[0], first) is None
        for batch in (first.batches[0], first.batches[-1]):
            answer = _post(base, key, chain[0], first.device, batch.body)
            assert isinstance(answer, Acked)
            assert (answer.head_seq, answer.stored) == (601, 0)
        last = first.batches[-1].body
        answers = _at_once(4, lambda: _post(base, key, chain[0], first.device, last))
        assert [(a.head_seq, a.stored) for a in answers] == [(601, 0)] * 4
        # The second till runs its whole night twice at the same moment: one
        # session stores each batch, the other is told it is held.
        outcomes = _at_once(2, lambda: night.upload_night(base, key, chain[1], second))
        assert outcomes == [None, None]
        counts = night.night_counts(store, nights)
        assert (counts.stored, counts.distinct, counts.heads) == (2 * 601, 2 * 601, 2)
        assert counts.alerts == 0
        assert verify_all(store)["ok"] is True


# -- the COPY path against the INSERT ---------------------------------------------------


def _bound(hq: HQStore, till: NightTill) -> str:
    """The till registered in-process, as ``POST /v1/register`` does."""
    token = add_device(hq, till.store, till.till, utc_now())["token"]
    journal = Ed25519PrivateKey.from_private_bytes(till.journal_key)
    request = proven_request(journal, _transport(till), token, till.device, till.store, till.till)
    register(hq, hq_key(hq), request, utc_now())
    return till.device


def _stored(hq: HQStore, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(ENTRY_COLUMNS)
    with hq.read() as tx:
        return tx.all(f"SELECT {columns} FROM {table} ORDER BY device, seq")


def _insert(tx: Tx, table: str, rows: list[tuple[Any, ...]]) -> None:
    """The slow path: one INSERT per row (what ingest did before ``Tx.copy``)."""
    marks = ", ".join("?" for _ in ENTRY_COLUMNS)
    tx.many(f"INSERT INTO {table} ({', '.join(ENTRY_COLUMNS)}) VALUES ({marks})", rows)


def test_ingest_stores_what_the_insert_of_entry_rows_would(hq_store: HQStore) -> None:
    """A night ingested (entries by COPY on PostgreSQL) reads back as the rows
    ``entry_row`` makes, inserted one by one into a table of the same shape."""
    till = night.chain_tills(1)[0]
    device = _bound(hq_store, till)
    entries: list[Entry] = [entry for entry, _ in night.night_entries(till, 700, EVENING)]
    key = hq_key(hq_store)
    for start in range(0, len(entries), 250):
        chunk = tuple(entries[start : start + 250])
        ingest(hq_store, key, device, Batch(device, chunk), utc_now(), utc_now())
    with hq_store.write() as tx:
        tx.run("CREATE TABLE night_slow AS SELECT * FROM entries WHERE 1 = 0")
        _insert(tx, "night_slow", [entry_row(entry) for entry in entries])
    assert _stored(hq_store, "entries") == _stored(hq_store, "night_slow")
    assert len(_stored(hq_store, "entries")) == 701


# What COPY's text format must escape, and the integers at BIGINT's ends.
AWKWARD = ["tab\there", "line\nbreak\r\n", "back\\slash", "\\N", "", "quote\"'", "é ✓ \u2028", None]


def _awkward_rows() -> Iterator[tuple[Any, ...]]:
    for n, text in enumerate(AWKWARD):
        yield (
            f"dev{n % 2}",
            n + 1,
            "2026-12-03T18:00:00.000+00:00",
            "earn",
            text,
            f'{{"note":{n}}}' if text is None else text,
            "0" * 64,
            f"{n:064x}",
            "ab" * 64,
            text,
            2**63 - 1 if n % 2 else -(2**63),
            0,
            -n,
            text,
            None,
            text,
            n % 2,
        )


def test_copy_and_insert_store_the_same_awkward_rows(hq_store: HQStore) -> None:
    rows = list(_awkward_rows())
    with hq_store.write() as tx:
        for table in ("night_copy", "night_insert"):
            tx.run(f"CREATE TABLE {table} AS SELECT * FROM entries WHERE 1 = 0")
        tx.copy("night_copy", ENTRY_COLUMNS, rows)
        _insert(tx, "night_insert", rows)
    ordered = sorted(rows, key=lambda row: (row[0], row[1]))
    assert _stored(hq_store, "night_copy") == _stored(hq_store, "night_insert") == ordered


def test_a_copy_with_a_held_key_stores_nothing(hq_store: HQStore) -> None:
    """A row the table holds already fails the whole copy (``concurrent_upload``:
    the till retries and is told its entries are held), as an INSERT would."""
    rows = list(_awkward_rows())
    with hq_store.write() as tx:
        tx.copy("entries", ENTRY_COLUMNS, rows[:1])
    with pytest.raises(SyncError) as caught, hq_store.write() as tx:
        tx.copy("entries", ENTRY_COLUMNS, [*rows[1:4], rows[0], *rows[4:]])
    assert (caught.value.code, caught.value.http_status) == ("concurrent_upload", 409)
    assert _stored(hq_store, "entries") == rows[:1]


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize("tills", ["0", "-1", "abc", "1.5", "100001", "", "1e3", "\uff11"])
def test_bench_refuses_a_chain_size_that_is_not_a_whole_number(tills: str) -> None:
    code, answer = cli(None, "bench", "--only", "night", "--tills", tills)
    assert (code, answer["error"]) == (2, "invalid_tills")
    assert "figures" not in answer


def test_a_night_is_what_tillpoints_sync_sends() -> None:
    """Each batch is the JSON ``sync.till_sync`` builds from journal rows, and its
    entries are the signed chain (checked again by HQ's judge in the tests above)."""
    import gzip
    import json

    till = night.chain_tills(1)[0]
    made: Night = night.night_of(till, 520, EVENING)
    assert [(b.first, b.last) for b in made.batches] == [(1, 500), (501, 521)]
    documents = [json.loads(gzip.decompress(batch.body)) for batch in made.batches]
    entries = [Entry.from_json(item) for document in documents for item in document["entries"]]
    assert [entry.seq for entry in entries] == list(range(1, 522))
    assert entries[0].kind == "init" and {e.kind for e in entries[1:]} == {"earn"}
    assert all(after.prev == before.hash for before, after in itertools.pairwise(entries))
    assert made.head_hash == entries[-1].hash and made.device == till.device
