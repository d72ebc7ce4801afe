"""Benchmark hooks for ``tillpoints bench``: simulation rate and report times.

Each returns ``{"value", "unit"}``. The simulation figure runs the real
simulator (ledger, model, signatures, ingest, fact refresh). The report figures
measure the SQL of a report, not ingest: their rows are generated inside the
database by a recursive CTE (portable to both backends) with arithmetic
spreads, which fills a million rows in seconds instead of the minutes a signed,
verified upload of them takes.
"""

# ruff: noqa: S608, E501 -- generated-row SQL from constants; sizes are bound.

from __future__ import annotations

import time
from typing import Any

from sync.hq.db import HQStore
from sync.hq.insight.catalog import run_report
from sync.hq.insight.facts import ensure_tables, refresh
from sync.hq.stores import open_store
from tillpoints.bench_hq import scratch_db

Figure = dict[str, Any]
# No "%" operator in this SQL: psycopg reads it as a placeholder; i - i / k * k is
# the remainder on both backends.
_SERIES = (
    "WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
)


def hq_simulate_entries_per_s(
    backend_url: str | None = None, stores: int = 10, members: int = 5_000, days: int = 90
) -> Figure:
    from sync.hq.insight.simulate import simulate

    with scratch_db(backend_url) as url:
        store = open_store(url)
        try:
            summary = simulate(store, stores=stores, members=members, days=days, seed=1)
        finally:
            store.close()
    return {
        "value": round(summary["entries"] / summary["seconds"], 1),
        "unit": "entries/s",
        # CPU per entry across every process: what a busier machine cannot change.
        "cpu_us_per_entry": round(summary["cpu_seconds"] * 1e6 / summary["entries"], 1),
        "peak_rss_mib": summary["peak_rss_mib"],
    }


def _members(store: HQStore, count: int, sales_each: int) -> None:
    """``count`` members at 100 stores, ``sales_each`` receipts each over a year."""
    ensure_tables(store)
    with store.write() as tx:
        tx.run(
            _SERIES + "INSERT INTO ins_members SELECT 'm' || i, 'S' || ((i - i / 100 * 100)), "
            "'2025-01-01', 20089, 1940 + (i - i / 60 * 60), '06-15', 'F', 1 + (i - i / 4 * 4), (i - i / 3 * 3) FROM n",
            (count,),
        )
        tx.run(
            _SERIES + "INSERT INTO ins_sales SELECT 'd' || ((i - i / 200 * 200)), i, 'earn', "
            "'m' || (1 + i - i / ? * ?), 'S' || ((i - i / 100 * 100)), '2025-06-01', 20089 + (i * 7919 - (i * 7919) / 365 * 365), "
            "8 + (i - i / 14 * 14), 1 + (i - i / 7 * 7), 'R' || i, 100 + (i * 104729 - (i * 104729) / 9000 * 9000), 10, 0, 0 FROM n",
            (count * sales_each, count, count),
        )


def hq_segments_100k_members_s(backend_url: str | None = None, members: int = 100_000) -> Figure:
    with scratch_db(backend_url) as url:
        store = open_store(url)
        try:
            _members(store, members, 12)
            started = time.perf_counter()
            result = run_report(store, "segments", end="2025-12-31")
            elapsed = time.perf_counter() - started
        finally:
            store.close()
    assert result["totals"]["members"] == members
    return {"value": round(elapsed, 3), "unit": "s", "target": 30}


def hq_report_liability_1m_entries_s(
    backend_url: str | None = None, entries: int = 1_000_000
) -> Figure:
    with scratch_db(backend_url) as url:
        store = open_store(url)
        try:
            _members(store, entries // 10, 0)
            with store.write() as tx:
                tx.run(
                    _SERIES
                    + "INSERT INTO devices SELECT 'd' || (i - 1), 'S' || ((i - i / 100 * 100)), 'T1', "
                    "'k', 'k', 'k', 'bound', 0, '', '2025-01-01', NULL FROM n",
                    (200,),
                )
                tx.run(
                    _SERIES + "INSERT INTO entries SELECT 'd' || ((i - i / 200 * 200)), i, "
                    "'2025-06-01T10:00:00.000+00:00', 'earn', NULL, '{}', '', '', '', "
                    "'m' || ((i - i / ? * ?)), 10 + (i - i / 50 * 50), 0, 1000, NULL, NULL, NULL, 1 FROM n",
                    (entries, entries // 10, entries // 10),
                )
                tx.run(
                    _SERIES
                    + "INSERT INTO ins_lots SELECT 'd' || ((i - i / 200 * 200)), i, 'm' || ((i - i / ? * ?)), "
                    "'2025-06-01', 10 + (i - i / 50 * 50), '2027-06-01' FROM n",
                    (entries, entries // 10, entries // 10),
                )
            refresh(store)
            started = time.perf_counter()
            result = run_report(store, "liability", end="2025-12-31")
            elapsed = time.perf_counter() - started
        finally:
            store.close()
    assert result["totals"]["accounts"] == entries // 10
    return {"value": round(elapsed, 3), "unit": "s", "target": 5}
