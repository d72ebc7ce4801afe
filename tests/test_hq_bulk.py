"""HQ's bulk paths on both backends: ``Tx.add_new`` (one COPY on PostgreSQL, not a
statement per row), ``looked_up`` (a few hundred keys a statement) and the
consent and seal lookups built on it, and a refresh that does not wait for another
(issue 18: what made a simulated chain on PostgreSQL four times slower than on
SQLite)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sync.hq.db import IN_LIST, HQStore, looked_up
from sync.hq.insight.batches import follow_batches
from sync.hq.insight.facts import refresh
from sync.hq.member_keys import consent_rows
from sync.hq.stores import open_store
from tests import sync_helpers

db_url = sync_helpers.db_url
hq_store = sync_helpers.hq_store
pg_database = sync_helpers.pg_database

_TABLE = "CREATE TABLE bulk_t (k TEXT PRIMARY KEY, n INTEGER, note TEXT)"


@pytest.fixture
def bulk(hq_store: HQStore) -> Iterator[HQStore]:
    with hq_store.write() as tx:
        tx.run(_TABLE)
    yield hq_store


def _rows(store: HQStore) -> list[tuple[Any, ...]]:
    with store.read() as tx:
        return sorted(tx.all("SELECT k, n, note FROM bulk_t"))


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_add_new_stores_the_new_rows_and_leaves_the_held_keys_as_they_were(
    bulk: HQStore,
) -> None:
    awkward = "tab\there, new\nline, back\\slash, \\N, quote ' and \u00e9"
    with bulk.write() as tx:
        tx.add_new("bulk_t", [("a", 1, awkward), ("b", None, None)])
        # Twice in one transaction: the second call's rows only, held keys kept.
        tx.add_new("bulk_t", [("b", 2, "second"), ("c", 3, "")])
    with bulk.write() as tx:
        tx.add_new("bulk_t", [("a", 9, "again"), ("d", 4, None)])
        tx.add_new("bulk_t", [])
    assert _rows(bulk) == [
        ("a", 1, awkward),
        ("b", None, None),
        ("c", 3, ""),
        ("d", 4, None),
    ]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_add_new_works_after_a_transaction_that_rolled_back(bulk: HQStore) -> None:
    """On PostgreSQL the staging table made inside a transaction that rolls back is
    gone with it: the next call makes it again, and nothing of the first is kept."""
    with pytest.raises(RuntimeError), bulk.write() as tx:
        tx.add_new("bulk_t", [("lost", 1, None)])
        raise RuntimeError("the business fact failed")
    with bulk.write() as tx:
        tx.add_new("bulk_t", [("kept", 2, None)])
    assert _rows(bulk) == [("kept", 2, None)]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_looked_up_finds_every_key_however_many_are_asked(bulk: HQStore) -> None:
    count = IN_LIST * 2 + 7
    with bulk.write() as tx:
        tx.add_new("bulk_t", [(f"k{n:05d}", n, None) for n in range(0, count, 3)])
    with bulk.read() as tx:
        asked = [f"k{n:05d}" for n in range(count)]
        found = looked_up(tx, "SELECT k, n FROM bulk_t WHERE k IN ({})", asked)
        assert looked_up(tx, "SELECT k FROM bulk_t WHERE k IN ({})", []) == []
    assert sorted(found) == [(f"k{n:05d}", n) for n in range(0, count, 3)]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_consents_looked_up_together_are_each_member_s_own(hq_store: HQStore) -> None:
    """HQ's later decision wins over a till's word, an erased member's is 0, and the
    rest keep what the till said: for more members than one statement asks about."""
    members = [f"M{n:05d}" for n in range(IN_LIST + 50)]
    with hq_store.write() as tx:
        for n, member in enumerate(members):
            if n % 5 == 0:
                tx.run(
                    "INSERT INTO hq_consents (member_id, marketing, at, operator) "
                    "VALUES (?, ?, ?, 'ops')",
                    (member, n % 2, "2025-06-01T00:00:00Z"),
                )
            if n % 7 == 0:
                tx.run(
                    "INSERT INTO hq_erasures (member_id, batch_no, erased_at, operator, reason) "
                    "VALUES (?, 0, '2025-07-01T00:00:00Z', 'ops', 'asked')",
                    (member,),
                )
    said = [(member, 1, "2025-05-01T00:00:00+02:00" if n % 2 else "") for n, member in
            enumerate(members)]  # fmt: skip
    with hq_store.read() as tx:
        together = consent_rows(tx, said)
        one_by_one = [consent_rows(tx, [word])[0] for word in said]
    assert together == one_by_one
    expected = [
        (0 if n % 7 == 0 else n % 2 if n % 5 == 0 else 1, member)
        for n, member in enumerate(members)
    ]
    assert together == expected


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_refresh_that_may_not_wait_leaves_a_busy_cursor_to_its_holder(db_url: str) -> None:
    """On PostgreSQL a simulation's worker refreshes with ``wait=False``: while another
    refresh holds the cursor (and the facts tables it writes), it returns at once
    and reads nothing; the holder, or the next refresh, reads every batch."""
    import psycopg

    store = open_store(db_url)
    try:
        assert refresh(store) == 0  # the tables made, this store's first refresh
        holder = psycopg.connect(db_url)
        try:
            holder.execute("SELECT batch_no FROM ins_state WHERE id = 1 FOR UPDATE")
            holder.execute("LOCK TABLE ins_sales, ins_lines, ins_lots IN ROW EXCLUSIVE MODE")
            done: list[int] = []
            worker = threading.Thread(target=lambda: done.append(refresh(store, wait=False)))
            started = time.monotonic()
            worker.start()
            worker.join(timeout=10)
            took = time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()
        worker.join()
        assert done == [0] and took < 5
        blocked = threading.Event()
        holder = psycopg.connect(db_url)
        try:
            holder.execute("SELECT batch_no FROM ins_state WHERE id = 1 FOR UPDATE")
            waiting = threading.Thread(target=lambda: (refresh(store), blocked.set()))
            waiting.start()
            # A refresh that may wait does: it returns only once the holder is done.
            assert not blocked.wait(0.5)
        finally:
            holder.rollback()
            holder.close()
        waiting.join(timeout=10)
        assert blocked.is_set()
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_no_key_or_personal_field_passes_through_a_staging_table(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staging table's file is not cleaned by an erasure (it vacuums HQ's own
    tables): members' keys and ``ins_members`` are written row by row, the other
    facts in bulk."""
    from sync.hq import postgres
    from sync.hq.insight.simulate import simulate

    staged: set[str] = set()
    real = postgres._PostgresTx.add_new

    def recording(tx: Any, table: str, rows: Any) -> None:
        if rows:
            staged.add(table)
        real(tx, table, rows)

    monkeypatch.setattr(postgres._PostgresTx, "add_new", recording)
    store = open_store(db_url)
    try:
        summary = simulate(store, stores=1, members=20, days=10, seed=1, workers=1)
        with store.read() as tx:
            keys = tx.one("SELECT count(*) FROM hq_member_keys")
            members = tx.one("SELECT count(*) FROM ins_members")
    finally:
        store.close()
    assert summary["members"] > 0 and keys == members == (summary["members"],)
    assert {"ins_sales", "ins_lines", "ins_lots", "ins_cards"} <= staged
    assert not staged & {"hq_member_keys", "ins_members"}


def test_a_page_of_batches_reads_its_entries_in_batch_order(db_url: str) -> None:
    """``follow_batches`` finds a page's entries by each device's range of seqs and
    hands them over in batch order, then seq order, as they were committed; the
    batches after the page and the other kinds are left out. A page holds fewer
    batches when they hold more than its entries."""
    store = open_store(db_url)
    try:
        with store.write() as tx:
            for device in ("D1", "D2"):
                tx.run(
                    "INSERT INTO devices (device, store, till, public_key, current_key, "
                    "transport_key, state, head_seq, head_hash, registered_at) "
                    "VALUES (?, 'S1', 'T01', 'k', 'k', 't', 'bound', 0, '0', '2025-01-01')",
                    (device,),
                )
            # Batch 1: D2's seqs 1-2; 2: D1's 1-3; 3: D2's 3-4; 4 (next page): D1's 4.
            batches = ((1, "D2", 1, 2), (2, "D1", 1, 3), (3, "D2", 3, 4), (4, "D1", 4, 4))
            for number, device, first, last in batches:
                tx.run("INSERT INTO batches VALUES (?, ?, ?, ?, '2025-01-01')",
                       (number, device, first, last))  # fmt: skip
                for seq in range(first, last + 1):
                    kind = "consent" if (device, seq) == ("D1", 2) else "earn"
                    tx.run(
                        "INSERT INTO entries VALUES (?, ?, '2025-01-01T10:00:00.000+00:00', ?, "
                        "NULL, '{}', '0', '0', '0', NULL, 0, 0, 0, NULL, NULL, NULL, 0)",
                        (device, seq, kind),
                    )
            tx.run("CREATE TABLE order_state (id INTEGER PRIMARY KEY, batch_no BIGINT NOT NULL)")
            tx.run("INSERT INTO order_state VALUES (1, 0)")
        pages: list[list[tuple[str, int]]] = []

        def apply(tx: Any, rows: list[tuple[Any, ...]]) -> int:
            pages.append([(str(row[0]), int(row[1])) for row in rows])
            return len(rows)

        assert follow_batches(store, "order_state", ("earn",), apply, page=3) == 7
        # Pages of at most four entries (a batch holds 1 to 3): batch 1; batch 2;
        # batches 3 and 4.
        with store.write() as tx:
            tx.run("UPDATE order_state SET batch_no = 0")
        assert follow_batches(store, "order_state", ("earn",), apply, entries=4) == 7
    finally:
        store.close()
    assert pages == [
        [("D2", 1), ("D2", 2), ("D1", 1), ("D1", 3), ("D2", 3), ("D2", 4)],
        [("D1", 4)],
        [("D2", 1), ("D2", 2)],
        [("D1", 1), ("D1", 3)],
        [("D2", 3), ("D2", 4), ("D1", 4)],
    ]
