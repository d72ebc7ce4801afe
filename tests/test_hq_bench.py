"""The bench hooks run end to end at toy sizes (no timing is asserted)."""

from __future__ import annotations

import psycopg

from tests import sync_helpers
from tillpoints import bench_hq as bench

pg_database = sync_helpers.pg_database


def test_bench_hooks_return_figures() -> None:
    figures = [
        bench.hq_ingest_entries_per_s(None, count=1_200, rounds=3),
        bench.catch_up_30_days_s(per_day=40, days=3),
        bench.concurrent_tills_200_errors(tills=4, entries=10),
    ]
    assert set(figures[0]) == {"value", "unit", "limit", "ratio", "rounds"}
    assert figures[0]["ratio"] == round(figures[0]["value"] / figures[0]["limit"], 3)
    # The figure is the round of median ratio, every round's ratio beside it.
    assert len(figures[0]["rounds"]) == 3
    assert figures[0]["rounds"] == sorted(figures[0]["rounds"])
    assert set(figures[1]) == {"value", "unit"} and figures[1]["value"] > 0
    assert figures[2]["value"] == 0


def test_the_simulation_figure_runs_on_postgresql(pg_database: str) -> None:
    """``hq_simulate_postgres_entries_per_s``: the bench's chain simulated into a
    scratch PostgreSQL schema, dropped afterwards (here at a toy size)."""
    from tillpoints.bench_insight import hq_simulate_entries_per_s

    figure = hq_simulate_entries_per_s(pg_database, stores=1, members=20, days=10)
    assert set(figure) == {"value", "unit", "cpu_us_per_entry", "peak_rss_mib"}
    assert figure["value"] > 0 and figure["unit"] == "entries/s"
    with psycopg.connect(pg_database) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_%'"
        ).fetchone()
    assert left == (0,)
