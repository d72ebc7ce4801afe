"""The incremental aggregates (sync.hq.insight.aggregates) against a full recompute.

A small chain is simulated once (SQLite). Its journals then reach a fresh HQ on
each backend in two uploads: every till but one first, the held-back till's
batches (older days, enrolments whose cards other tills earned on) after the
first refresh, as a till that was offline uploads late. After each refresh the
``agg_*`` tables must equal what a plain Python pass over the facts and entries
gives; a member's erasure changes none of them; a rebuild from scratch gives the
same rows; and the reports that read aggregates match the ones that scan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.ledger import Ledger
from sync.hq.db import Tx
from sync.hq.devices import hq_key
from sync.hq.ingest import ingest
from sync.hq.insight import aggregates, audience, catalog, reports
from sync.hq.insight.audience import segments
from sync.hq.insight.catalog import headline, run_report
from sync.hq.insight.facts import PAGE, day_no, ensure_tables, rebuild, refresh, set_stores
from sync.hq.insight.page import index_page
from sync.hq.insight.reports import Period, Report, liability
from sync.hq.insight.simulate import simulate
from sync.hq.schema import _012_REPORT_AGGREGATES
from sync.hq.scrub import cli_operator, erase
from sync.hq.stores import open_store
from tests import sync_helpers
from tests.insight_helpers import aggregate_rows, check_aggregates
from tests.sync_helpers import batch_of, bind, entries_of, make_till, pg_schema, utc_now

db_url = sync_helpers.db_url

STORES, MEMBERS, DAYS = 3, 60, 75
LATE = 1_000_000  # the held-back till's batches are numbered after every other


@pytest.fixture(scope="module")
def chain_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('aggregates')}/chain.db"
    store = open_store(url)
    try:
        summary = simulate(store, stores=STORES, members=MEMBERS, days=DAYS, seed=11)
    finally:
        store.close()
    assert summary["refunds"] > 0
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/hq.db"
        open_store(url).close()
        yield url
        return
    with pg_schema(request.getfixturevalue("pg_database")) as url:
        yield url


def _upload(source_url: str, target_url: str, late: bool, page: int = PAGE) -> None:
    """The chain's rows in ``target``: every till but the last first, then (``late``)
    the last till's entries and batches, numbered after the rest; refreshed ``page``
    batches a transaction."""
    source, target = open_store(source_url), open_store(target_url)
    try:
        with source.read() as src, target.write() as dst:
            held = str(src.all("SELECT device FROM devices ORDER BY device")[-1][0])
            if not late:
                dst.run("DELETE FROM hq_meta")
                for table in ("hq_meta", "devices", "hq_member_keys"):
                    rows = src.all(f"SELECT * FROM {table}")
                    dst.many(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
            pick, shift = ("device = ?", LATE) if late else ("device <> ?", 0)
            entries = src.all(f"SELECT * FROM entries WHERE {pick}", (held,))
            dst.many(f"INSERT INTO entries VALUES ({', '.join('?' * len(entries[0]))})", entries)
            batches = src.all(f"SELECT * FROM batches WHERE {pick}", (held,))
            dst.many(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                [(int(row[0]) + shift, *row[1:]) for row in batches],
            )
            regions = src.all("SELECT store, region FROM ins_stores")
        set_stores(target, regions)
        refresh(target, page)
    finally:
        target.close()
        source.close()


def test_aggregates_equal_a_recompute_after_late_uploads_erasure_and_rebuild(
    chain_url: str, target_url: str
) -> None:
    _upload(chain_url, target_url, late=False)
    check_aggregates(target_url)
    unbound = _card_rows(target_url)
    _upload(chain_url, target_url, late=True)
    check_aggregates(target_url)
    # The late till's enrolments bound cards other tills had earned on: their rows
    # moved to the members, as a rebuild (which reads the enrolments first) has them.
    assert unbound and _card_rows(target_url) < unbound
    members = aggregate_rows(target_url, "agg_members")
    assert len(members) >= MEMBERS
    store = open_store(target_url)
    try:
        victim = min(key[0] for key in members if not str(key[0]).startswith("C"))
        erase(
            store,
            cli_operator("test", dt.datetime.now(dt.UTC)),
            victim,
            "asked",
            dt.datetime.now(dt.UTC),
        )
        refresh(store)
    finally:
        store.close()
    check_aggregates(target_url)
    kept = {table: aggregate_rows(target_url, table) for table in aggregates.AGGREGATE_TABLES}
    facts = _facts(target_url)
    store = open_store(target_url)
    try:
        rebuild(store)
        aggregates.rebuild(store)
    finally:
        store.close()
    assert {
        table: aggregate_rows(target_url, table) for table in aggregates.AGGREGATE_TABLES
    } == kept
    assert _facts(target_url) == facts


_CARD_BOOKED = ("ins_sales", "ins_lines", "ins_lots", "agg_members")


def _facts(url: str) -> dict[str, list[tuple[Any, ...]]]:
    store = open_store(url)
    try:
        with store.read() as tx:
            return {
                table: sorted(map(tuple, tx.all(f"SELECT * FROM {table}")))
                for table in ("ins_cards", "ins_sales", "ins_lines", "ins_lots")
            }
    finally:
        store.close()


def _card_rows(url: str) -> int:
    """Facts and member rows still booked to a card's account."""
    store = open_store(url)
    try:
        with store.read() as tx:
            counts = [
                tx.one(f"SELECT COUNT(*) FROM {table} WHERE member >= 'C' AND member < 'D'")
                for table in _CARD_BOOKED
            ]
    finally:
        store.close()
    return sum(int(count[0]) for count in counts if count)


@pytest.mark.parametrize("page", [1, 5])
def test_aggregates_of_many_small_pages_equal_a_recompute(
    chain_url: str, tmp_path: Path, page: int
) -> None:
    """Each page adds its members' sums (their entries', sales' and new lots' in one
    upsert) and recounts them: over pages of one and of five batches, with the late
    till's, that is the whole history's aggregates."""
    url = f"sqlite:///{tmp_path}/hq.db"
    open_store(url).close()
    _upload(chain_url, url, late=False, page=page)
    check_aggregates(url)
    _upload(chain_url, url, late=True, page=page)
    check_aggregates(url)


def test_reports_from_aggregates_match_the_scans(chain_url: str, target_url: str) -> None:
    _upload(chain_url, target_url, late=False)
    _upload(chain_url, target_url, late=True)
    store = open_store(target_url)
    try:
        figures = headline(store)
        sales = run_report(store, "sales")
        full = run_report(store, "segments")
        with store.read() as tx:
            as_of = dt.date.fromisoformat(str(sales["period"]["to"]))
            # A period that starts before the first sale is the same history, read
            # by the scanning query (aggregates.covers_members says no).
            scanned = segments(tx, Period("1970-01-01", None, None, as_of, store.dialect))
    finally:
        store.close()
    assert full["rows"] == scanned["rows"] and full["totals"] == scanned["totals"]
    assert figures["segments"]["totals"] == full["totals"]
    assert figures["sales"]["totals"] == {
        key: sales["totals"][key] for key in ("spend", "receipts")
    }
    assert figures["sales"]["rows"] == [
        {key: value for key, value in row.items() if key != "members"}
        for row in sales["rows"]
        if row["by"] in ("store", "hour", "weekday", "category")
    ]
    assert figures["liability"]["totals"]["points"] > 0
    store = open_store(target_url)
    try:
        with store.write() as tx:
            # As if a30 and a90 were counted from another day: liability sums the lots.
            tx.run("UPDATE agg_state SET expiry_day = '1970-01-01' WHERE id = 1")
            period = Period(None, str(as_of), None, as_of, store.dialect)
            summed = liability(tx, period)
            tx.run("UPDATE agg_state SET expiry_day = ? WHERE id = 1", (str(as_of),))
    finally:
        store.close()
    assert figures["liability"]["rows"] == summed["rows"]
    assert figures["liability"]["totals"] == summed["totals"]


def test_expiring_points_follow_the_newest_day(tmp_path: Path) -> None:
    """Lots that expire 60 days after they are earned, read a page at a time as the
    newest day moves on by weeks: a30 and a90 lose the lots whose expiry the day
    passes, exactly as a recount gives (the simulated chain's lots all expire years
    after its newest day)."""
    url = f"sqlite:///{tmp_path}/hq.db"
    store = open_store(url)
    try:
        ensure_tables(store)
        with store.write() as tx:
            tx.run(
                "INSERT INTO devices (device, store, till, public_key, current_key, "
                "transport_key, state, head_seq, head_hash, registered_at) "
                "VALUES ('d1', 'S1', 'T01', 'k', 'k', 't', 'bound', 0, '0', '2025-01-01')"
            )
        start = dt.date(2025, 1, 1)
        for seq, gap in enumerate((0, 20, 45, 9, 70, 31, 90), start=1):
            start += dt.timedelta(days=gap)
            day, expires = start.isoformat(), (start + dt.timedelta(days=60)).isoformat()
            member = f"M{seq % 3}"
            with store.write() as tx:
                tx.run(
                    "INSERT INTO entries VALUES ('d1', ?, ?, 'earn', NULL, '{}', '0', '0', '0', "
                    "?, 10, 0, 500, NULL, NULL, NULL, 1)",
                    (seq, f"{day}T10:00:00.000+00:00", member),
                )
                tx.run("INSERT INTO batches VALUES (?, 'd1', ?, ?, ?)", (seq, seq, seq, day))
                tx.run(
                    "INSERT INTO ins_sales VALUES ('d1', ?, 'earn', ?, 'S1', ?, ?, 10, 3, ?, "
                    "500, 10, 0, 0)",
                    (seq, member, day, day_no(day), f"R{seq}"),
                )
                tx.run(
                    "INSERT INTO ins_lines VALUES ('d1', ?, 0, ?, 'S1', ?, 'bakery', 1, 500)",
                    (seq, member, day),
                )
                tx.run(
                    "INSERT INTO ins_lots VALUES ('d1', ?, ?, ?, 10, ?)",
                    (seq, member, day, expires),
                )
                aggregates.add(tx, (seq - 1, seq))
            check_aggregates(url)
        with store.read() as tx:
            rows = tx.all("SELECT SUM(a30), SUM(a90) FROM agg_members")
        assert rows == [(10, 0)]  # the last lot alone outlives the newest day by 30
    finally:
        store.close()


def _scanned_sales(tx: Tx, period: Period) -> Report:
    """The sales report (a scan of every sale), as the page's summary shows it."""
    report = reports.sales(tx, period)
    kept = ("store", "hour", "weekday", "category")
    rows = [
        {key: value for key, value in row.items() if key != "members"}
        for row in report["rows"]
        if row["by"] in kept
    ]
    totals = {key: report["totals"][key] for key in ("spend", "receipts")}
    return {**report, "rows": rows, "totals": totals}


def test_the_reports_page_from_aggregates_is_the_page_from_a_recount(
    chain_url: str, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reports page as HQ serves it (``agg_liability``, ``agg_members``, the
    histograms, the sales' totals) and the same page with every figure recounted
    from the entries, lots and sales: the same HTML, byte for byte, for the chain
    and for one store."""
    _upload(chain_url, target_url, late=False)
    _upload(chain_url, target_url, late=True)
    store = open_store(target_url)
    try:
        with store.read() as tx:
            some = str(tx.all("SELECT MIN(store) FROM agg_liability")[0][0])
        for filters in ({}, {"store": some}):
            fast = index_page(store, filters, "test")
            with monkeypatch.context() as patched:
                patched.setattr(reports, "_aggregated", lambda tx, period: False)
                patched.setattr(audience, "covers_members", lambda *args: False)
                patched.setitem(catalog.HEADLINE, "sales", _scanned_sales)
                slow = index_page(store, filters, "test")
            assert "liability" in fast and fast == slow, filters
    finally:
        store.close()


def test_an_hq_with_011_aggregates_counts_012s_at_its_next_refresh(
    chain_url: str, target_url: str
) -> None:
    """An HQ that kept ``011_aggregates`` when ``012_report_aggregates`` came: its
    member rows are all dirty and uncounted, the new tables empty but for the totals
    the migration sums from ``agg_sales`` and ``agg_lines``. The next refresh, with
    no batch to read, counts them: the same rows as a recount."""
    _upload(chain_url, target_url, late=False)
    _upload(chain_url, target_url, late=True)
    store = open_store(target_url)
    try:
        with store.write() as tx:
            for table in aggregates.AGGREGATE_TABLES[4:]:
                tx.run(f"DELETE FROM {table}")
            tx.run(
                "UPDATE agg_members SET home = NULL, dirty = 1, c_store = NULL, c_points = 0, "
                "c_x30 = 0, c_x90 = 0, c_last = NULL, c_visits = NULL, c_monetary = NULL"
            )
            for statement in _012_REPORT_AGGREGATES:
                if statement.startswith("INSERT"):
                    tx.run(statement)
        assert refresh(store) == 0
    finally:
        store.close()
    check_aggregates(target_url)


CARD_A, CARD_B = "9900835840532866", "9900568732746027"


def test_a_replaced_card_keeps_one_member_row_counted_once(tmp_path: Path, db_url: str) -> None:
    """A real till: a member enrols with a card, earns, has the card replaced, earns
    and redeems on the new card and refunds; HQ reads it in two uploads (before and
    after the replacement), then the member is erased. After each refresh every
    aggregate equals the recount and the member is one row, one account in the
    liability."""
    hq = open_store(db_url)
    try:
        state = make_till(tmp_path, "till")
        device = bind(hq, state)
        ledger = Ledger(state)
        try:
            member = ledger.enrol(name="Ann", phone="0611111111", card=CARD_A).member_id
            ledger.earn(CARD_A, "R1", amount=4000)
            first = len(list(ledger.entries()))
            ledger.card_replace(member, CARD_B, staff="S9")
            ledger.earn(CARD_B, "R2", amount=6000)
            ledger.redeem(CARD_B, "R3", 100)
            ledger.refund("R1")
        finally:
            ledger.close()
        entries = entries_of(state)
        key = hq_key(hq)
        for part in (entries[:first], entries[first:]):
            ingest(hq, key, device, batch_of(part), utc_now(), utc_now())
            refresh(hq)
            check_aggregates(db_url)
        erase(hq, cli_operator("test", utc_now()), member, "asked", utc_now())
        refresh(hq)
        check_aggregates(db_url)
        with hq.read() as tx:
            rows = tx.all("SELECT member, home, c_store FROM agg_members")
            accounts = tx.all("SELECT store, accounts FROM agg_liability")
    finally:
        hq.close()
    assert rows == [(member, "S001", "S001")] and accounts == [("S001", 1)]
