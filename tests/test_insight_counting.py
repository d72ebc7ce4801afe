"""The counting tables (``agg_liability``, ``agg_recency``, ``agg_spend``) kept by
``aggregates._count`` as member rows move, against a recount straight from
``agg_members``, on SQLite and PostgreSQL.

Hypothesis draws rounds of what a refresh does to member rows: sums added (points
up or down, earns, visits, spend, the lots that expire later), an enrolment that
gives an older row its home store, a card's row folded away; after each round the
dirty rows are recounted and the tables must equal the recount.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.hq.insight import aggregates
from sync.hq.insight.facts import ensure_tables
from sync.hq.stores import open_store
from tests import sync_helpers

db_url = sync_helpers.db_url
MEMBERS = ("M1", "M2", "M3", "C1", "C2")
STORES = ("S1", "S2")

change = st.tuples(
    st.sampled_from(MEMBERS),
    st.sampled_from(STORES),
    st.integers(-50, 80),  # points
    st.integers(0, 2),  # entries
    st.integers(0, 1),  # earns
    st.integers(20_000, 20_010),  # earn day
    st.integers(0, 1),  # visits
    st.integers(-300, 900),  # spend
    st.integers(0, 40),  # a30
    st.integers(0, 20),  # a90
)
step = st.one_of(
    st.tuples(st.just("change"), change),
    st.tuples(st.just("enrol"), st.sampled_from(MEMBERS[:3]), st.sampled_from(STORES)),
    st.tuples(st.just("fold"), st.sampled_from(MEMBERS[3:])),
)

RECOUNT = {
    "agg_liability": "SELECT COALESCE(home, seen), COUNT(*), SUM(points), "
    "SUM(CASE WHEN points > a30 THEN points - a30 ELSE 0 END), "
    "SUM(CASE WHEN points > a90 THEN points - a90 ELSE 0 END) FROM agg_members "
    "WHERE entries > 0 GROUP BY COALESCE(home, seen)",
    "agg_recency": "SELECT last_no, visits, COUNT(*) FROM agg_members "
    "WHERE home IS NOT NULL AND earns > 0 GROUP BY last_no, visits",
    "agg_spend": "SELECT monetary, COUNT(*) FROM agg_members "
    "WHERE home IS NOT NULL AND earns > 0 GROUP BY monetary",
}


def _apply(tx: Any, kind: str, *args: Any) -> None:
    if kind == "enrol":
        member, store = args
        tx.run(
            "INSERT INTO ins_members VALUES (?, ?, '2024-10-01', 20000, NULL, NULL, NULL, "
            "NULL, 0) ON CONFLICT DO NOTHING",
            (member, store),
        )
    elif kind == "fold":
        where = f"member = '{args[0]}'"
        aggregates._uncount(tx, where)
        tx.run(f"DELETE FROM agg_members WHERE {where}")
    else:
        member, store, points, entries, earns, day, visits, spend, a30, a90 = args[0]
        tx.run(
            f"INSERT INTO agg_members ({aggregates._MEMBER_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (member) DO UPDATE SET {aggregates._MEMBER_MERGE}",
            (member, store, points, entries, earns, day if earns else None,
             day if earns else None, visits, spend, a30, a90),
        )  # fmt: skip


def _rows(tx: Any, sql: str) -> set[tuple[Any, ...]]:
    return {tuple(int(v) if isinstance(v, int) else v for v in row) for row in tx.all(sql)}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rounds=st.lists(st.lists(step, min_size=1, max_size=6), min_size=1, max_size=5))
def test_counting_tables_equal_a_recount_of_the_member_rows(
    db_url: str, rounds: list[list[tuple[Any, ...]]]
) -> None:
    store = open_store(db_url)
    try:
        ensure_tables(store)
        with store.write() as tx:
            for table in ("ins_members", "agg_members", *RECOUNT):
                tx.run(f"DELETE FROM {table}")
        for steps in rounds:
            with store.write() as tx:
                for kind, *args in steps:
                    _apply(tx, kind, *args)
                aggregates._count(tx)
            with store.read() as tx:
                for table, sql in RECOUNT.items():
                    assert _rows(tx, f"SELECT * FROM {table}") == _rows(tx, sql), table
                assert not tx.all("SELECT member FROM agg_members WHERE dirty = 1")
    finally:
        store.close()
