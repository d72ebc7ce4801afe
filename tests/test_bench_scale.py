"""``tillpoints bench --only hq_scale`` at a tiny size: the bulk-filled chain is
one HQ's own code can read (bodies, facts, batches), its aggregates are the ones
a recount of its facts gives, and every timing of issue 18 is reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agent.entries import readable
from sync.hq.insight.catalog import run_report
from sync.hq.projection import balance
from sync.hq.stores import open_store
from tests.insight_helpers import check_aggregates
from tests.sync_helpers import cli, pg_schema
from tillpoints.bench_scale import fill, measure, measure_night, night

MEMBERS, ENTRIES = 300, 4_000


@pytest.fixture(scope="module")
def filled(pg_database: str) -> Iterator[tuple[str, dict[str, int]]]:
    with pg_schema(pg_database) as url:
        yield url, fill(url, MEMBERS, ENTRIES)


def test_the_filled_chain_reads_as_hq_wrote_it(filled: tuple[str, dict[str, int]]) -> None:
    url, counts = filled
    assert counts["members"] == MEMBERS and counts["entries"] == ENTRIES
    store = open_store(url)
    try:
        with store.read() as tx:
            rows = tx.all("SELECT kind, body FROM entries")
            kinds = {str(kind) for kind, _ in rows}
            stored = tx.one("SELECT COUNT(*) FROM batches WHERE first_seq > last_seq")
            points = tx.one("SELECT SUM(delta) FROM entries WHERE account = 'M00000001'")
        assert kinds == {"enrol", "earn", "redeem", "refund"}
        assert all(readable(str(kind), json.loads(str(body))) is not None for kind, body in rows)
        assert stored == (0,)
        liability = run_report(store, "liability")
        member = balance(store, "M00000001")
    finally:
        store.close()
    assert liability["totals"]["accounts"] == MEMBERS
    assert points is not None and member == {"member_id": "M00000001", "balance": points[0]}
    check_aggregates(url)


def test_every_figure_is_measured(filled: tuple[str, dict[str, int]]) -> None:
    figures = measure(filled[0])
    assert set(figures) == {
        "hq_scale_liability_s",
        "hq_scale_segments_s",
        "hq_scale_balance_s",
        "hq_scale_member_page_s",
        "hq_scale_reports_page_s",
    }
    assert all(figure["value"] > 0 and figure["target"] > 0 for figure in figures.values())


def test_a_night_refreshed_into_the_filled_chain_equals_a_recount(pg_database: str) -> None:
    """A night's uploads on the filled chain (``night``: the chain's members at its
    tills, one batch a till) are read by the facts refresh into report tables that
    equal a recount, and the night's figures are reported."""
    with pg_schema(pg_database) as url:
        fill(url, MEMBERS, ENTRIES)
        batches = night(url, 600)
        unread = _one(
            url, "SELECT COUNT(*) FROM batches WHERE batch_no > (SELECT batch_no FROM ins_state)"
        )
        figures = measure_night(url)
        check_aggregates(url)
        tonight = _one(url, "SELECT COUNT(*) FROM ins_sales WHERE day = '2026-01-01'")
    assert unread == (batches,) and batches == 6  # one a till: 3 stores, 2 tills each
    assert figures["hq_scale_night_refresh_s"]["entries"] == 600 and tonight == (600,)
    assert figures["hq_scale_reports_page_after_night_s"]["value"] > 0


def _one(url: str, sql: str) -> tuple[Any, ...] | None:
    store = open_store(url)
    try:
        with store.read() as tx:
            return tx.one(sql)
    finally:
        store.close()


@pytest.mark.parametrize("sizes", [("--members", "0"), ("--members", "10", "--entries", "5")])
def test_a_size_that_cannot_be_is_refused(sizes: tuple[str, ...]) -> None:
    code, answer = cli(None, "bench", "--only", "hq_scale", *sizes)
    assert code == 2 and answer["error"] == "invalid_usage"
