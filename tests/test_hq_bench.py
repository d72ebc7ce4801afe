"""The bench hooks run end to end at toy sizes (no timing is asserted)."""

from __future__ import annotations

from tillpoints import bench_hq as bench


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
