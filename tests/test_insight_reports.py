"""HQ insight reports cross-checked against slow, obvious recomputations from the
stored journals, and the same reports on SQLite and PostgreSQL.

One small chain is simulated once (SQLite), with one campaign in its spring whose
take-up is planted on a feature; its HQ tables are copied verbatim into a
PostgreSQL schema, so both backends hold the very same entries and campaigns, and
every report must come out identical, member ids included.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from agent.money import format_amount
from sync.hq.insight.catalog import REPORTS, render, run_report
from sync.hq.insight.simulate import simulate
from sync.hq.projection import members as hq_members
from sync.hq.stores import open_store
from tests.insight_helpers import (
    CAMPAIGN_TABLES,
    CHAIN_TABLES,
    copy_chain,
    everyone_campaign,
    plant_takes,
    rows_of,
)
from tests.sync_helpers import cli, pg_schema

STORES, MEMBERS, DAYS = 3, 120, 120
SPRING = dt.date(2025, 3, 1)  # the campaign's first day, inside the simulated period


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("insight")
    url = f"sqlite:///{folder}/hq.db"
    store = open_store(url)
    try:
        summary = simulate(store, stores=STORES, members=MEMBERS, days=DAYS, seed=7)
    finally:
        store.close()
    assert summary["members"] == MEMBERS and summary["refused"] == 0
    everyone_campaign(url, folder, "Spring", SPRING, days=21, holdout="0.3")
    assert plant_takes(url, "Spring", SPRING) > 5
    return url


@pytest.fixture(scope="module")
def pg_url(sqlite_url: str, pg_database: str) -> Iterator[str]:
    with pg_schema(pg_database) as url:
        copy_chain(sqlite_url, url, CHAIN_TABLES + CAMPAIGN_TABLES)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("pg_url"))


def report(url: str, name: str, **options: Any) -> dict[str, Any]:
    store = open_store(url)
    try:
        return run_report(store, name, **options)
    finally:
        store.close()


def journal(url: str) -> list[tuple[str, int, str, dict[str, Any], str, str]]:
    store = open_store(url)
    try:
        with store.read() as tx:
            rows = tx.all(
                "SELECT e.device, e.seq, e.kind, e.body, d.store, e.ts FROM entries e "
                "JOIN devices d ON d.device = e.device ORDER BY e.device, e.seq"
            )
    finally:
        store.close()
    return [(d, int(s), k, json.loads(b), st, ts) for d, s, k, b, st, ts in rows]


def owners(entries: list[Any]) -> dict[str, str]:
    return {
        "C" + body["card"]: body["member"]["member_id"]
        for _, _, kind, body, _, _ in entries
        if kind == "enrol"
    }


def cents(text: str) -> int:
    return int(Decimal(text) * 100)


# -- liability --------------------------------------------------------------------------


def test_liability_total_is_every_balance_and_every_effect(url: str) -> None:
    result = report(url, "liability")
    store = open_store(url)
    try:
        balances = sum(member["balance"] for member in hq_members(store))
    finally:
        store.close()
    effects = sum(
        body["effects"]["delta"] - body["effects"]["expired"]
        for _, _, _, body, _, _ in journal(url)
        if "effects" in body
    )
    assert result["totals"]["points"] == balances == effects > 0
    assert sum(row["points"] for row in result["rows"]) == balances
    for row in result["rows"]:
        assert 0 <= row["expiring_30d"] <= row["expiring_90d"] <= max(0, row["points"])
        assert row["region"] != "unknown"


# -- ranking and sales ---------------------------------------------------------------------


def _spend_by_member(url: str) -> tuple[dict[str, int], dict[str, set[tuple[str, str]]]]:
    entries = journal(url)
    owner = owners(entries)
    spend: dict[str, int] = defaultdict(int)
    visits: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for device, _, kind, body, _, _ in entries:
        if kind not in ("earn", "redeem", "refund"):
            continue
        member = owner.get(body["account"], body["account"])
        spend[member] += body["amount"] if kind == "earn" else 0
        spend[member] -= body["amount"] if kind == "refund" else 0
        if kind != "refund":
            visits[member].add((device, body["receipt"]))
    return spend, visits


def test_ranking_matches_the_receipts(url: str) -> None:
    result = report(url, "ranking")
    spend, visits = _spend_by_member(url)
    assert {row["member_id"]: cents(row["spend"]) for row in result["rows"]} == spend
    assert {row["member_id"]: row["visits"] for row in result["rows"]} == {
        member: len(receipts) for member, receipts in visits.items()
    }
    assert cents(result["totals"]["spend"]) == sum(spend.values())
    ordered = [cents(row["spend"]) for row in result["rows"]]
    assert ordered == sorted(ordered, reverse=True)


def test_sales_dimensions_each_add_up_to_the_total(url: str) -> None:
    result = report(url, "sales")
    total = cents(result["totals"]["spend"])
    spend, _ = _spend_by_member(url)
    assert total == sum(spend.values())
    by: dict[str, int] = Counter()
    for row in result["rows"]:
        by[row["by"]] += cents(row["spend"])
    assert set(by) == {"store", "region", "age_band", "gender", "hour", "weekday", "category"}
    assert all(value == total for value in by.values()), by


def test_period_and_store_filters_narrow_the_sums(url: str) -> None:
    whole = report(url, "ranking")
    first = report(url, "ranking", end="2025-02-28")
    later = report(url, "ranking", start="2025-03-01")
    assert cents(first["totals"]["spend"]) + cents(later["totals"]["spend"]) == cents(
        whole["totals"]["spend"]
    )
    per_store = sum(
        cents(report(url, "sales", store_id=f"S{n:03d}")["totals"]["spend"])
        for n in range(1, STORES + 1)
    )
    assert per_store == cents(whole["totals"]["spend"])


# -- rewards ------------------------------------------------------------------------------


def test_rewards_are_the_redemptions_and_bonuses(url: str) -> None:
    result = report(url, "rewards")
    entries = journal(url)
    redeemed = [body for _, _, kind, body, _, _ in entries if kind == "redeem"]
    bonuses = [body["bonus"] for _, _, kind, body, _, _ in entries if kind == "enrol"]
    assert redeemed, "the simulation should redeem"
    assert result["totals"]["redemptions"] == len(redeemed)
    assert result["totals"]["points"] == sum(body["points"] for body in redeemed)
    assert cents(result["totals"]["value"]) == sum(body["value"] for body in redeemed)
    assert result["totals"]["gift_points"] == sum(bonuses)


# -- segments and lists -------------------------------------------------------------------


def test_segments_cover_every_active_member_once(url: str) -> None:
    result = report(url, "segments")
    entries = journal(url)
    owner = owners(entries)
    enrolled = set(owner.values())
    active = {
        owner.get(body["account"], body["account"])
        for _, _, kind, body, _, _ in entries
        if kind == "earn"
    } & enrolled
    listed = [row["member_id"] for row in result["rows"]]
    assert sorted(listed) == sorted(active)
    sizes = {k: v for k, v in result["totals"].items() if k != "members"}
    assert sum(sizes.values()) == result["totals"]["members"] == len(active)
    assert Counter(row["segment"] for row in result["rows"]) == +Counter(sizes)
    for row in result["rows"]:
        assert 1 <= row["r"] <= 5 and 1 <= row["f"] <= 5 and 1 <= row["m"] <= 5
    assert len({row["segment"] for row in result["rows"]}) >= 4


def test_store_lists_carry_no_personal_data(url: str) -> None:
    for name in ("dormant", "birthdays", "callbacks"):
        result = report(url, name)
        for row in result["rows"]:
            assert {"member_id", "store", "reason"} <= set(row)
            assert not {"name", "phone_last4", "phone_key", "gender"} & set(row)
    callbacks = report(url, "callbacks")
    ids = [row["member_id"] for row in callbacks["rows"]]
    assert len(ids) == len(set(ids)) > 0


# -- affinity -----------------------------------------------------------------------------


def test_affinity_matches_a_slow_count(url: str) -> None:
    result = report(url, "affinity")
    baskets = [
        frozenset(line["category"] for line in body["lines"])
        for _, _, kind, body, _, _ in journal(url)
        if kind == "earn"
    ]
    total = len(baskets)
    assert result["totals"]["receipts"] == total
    count: Counter[frozenset[str]] = Counter()
    for basket in baskets:
        for size in (1, 2, 3):
            for items in itertools.combinations(sorted(basket), size):
                count[frozenset(items)] += 1
    assert result["rows"]
    for row in result["rows"]:
        antecedent = frozenset(row["antecedent"].split("+"))
        both = antecedent | {row["consequent"]}
        assert row["receipts"] == count[both]
        assert row["support"] == round(count[both] / total, 6)
        assert row["confidence"] == round(count[both] / count[antecedent], 6)
        lift = (count[both] / count[antecedent]) / (count[frozenset([row["consequent"]])] / total)
        assert row["lift"] == round(lift, 6)
    top = {(row["antecedent"], row["consequent"]) for row in result["rows"][:6]}
    missions = {("bakery", "dairy"), ("dairy", "bakery"), ("baby", "personal_care"),
                ("personal_care", "baby"), ("snacks", "drinks"), ("drinks", "snacks")}  # fmt: skip
    assert top & missions, "the basket missions should show as the strongest affinities"


# -- campaigns ------------------------------------------------------------------------------


def _assignment(url: str) -> list[tuple[str, str, str, str, int]]:
    """(member, store, segment, arm, took) of the Spring campaign, as HQ assigned them."""
    rows = rows_of(
        url,
        "SELECT m.member_id, m.store, m.segment, m.arm, "
        "(SELECT COUNT(*) FROM cmp_takes t WHERE t.offer_id = m.offer_id) "
        "FROM cmp_members m JOIN cmp_campaigns c ON c.campaign_id = m.campaign_id "
        "WHERE c.name = 'Spring'",
    )
    return [(str(m), str(s), str(g), str(a), int(n)) for m, s, g, a, n in rows]


@pytest.mark.parametrize("store_id", [None, "S002"])
def test_campaign_response_matches_the_receipts(url: str, store_id: str | None) -> None:
    """Arms, take-up, spend and visits recounted from the journals over the
    campaign's days, and the increment from them; for the chain and one store."""
    end = SPRING + dt.timedelta(days=20)
    result = report(url, "campaign_response", store_id=store_id)
    entries = journal(url)
    owner = owners(entries)
    spend: dict[str, int] = defaultdict(int)
    visits: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for device, _, kind, body, _, _ in entries:
        if kind in ("earn", "refund") and SPRING.isoformat() <= body["day"] <= end.isoformat():
            member = owner.get(body["account"], body["account"])
            spend[member] += body["amount"] if kind == "earn" else -body["amount"]
            if kind == "earn":
                visits[member].add((device, body["receipt"]))
    arms: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for member, home, segment, arm, took in _assignment(url):
        if store_id in (None, home):
            for key in ((segment, arm), ("all", arm)):
                arms[key][0] += 1
                arms[key][1] += took
                arms[key][2] += spend[member]
                arms[key][3] += len(visits[member])
    rows = {row["segment"]: row for row in result["rows"]}
    assert set(rows) == {segment for segment, _ in arms}
    assert [row["segment"] for row in result["rows"]][-1] == "all"
    for segment, row in rows.items():
        offered, took, offered_spend, _ = arms[(segment, "offer")]
        held, _, held_spend, held_visits = arms[(segment, "holdout")]
        assert (row["offered"], row["held_out"], row["takers"]) == (offered, held, took)
        assert (row["from"], row["to"]) == (SPRING.isoformat(), end.isoformat())
        assert cents(row["spend_offered"]) == offered_spend
        assert cents(row["spend_held_out"]) == held_spend
        if offered and held:
            lift = Fraction(offered_spend, offered) - Fraction(held_spend, held)
            assert row["incremental_spend"] == format_amount(round(lift * offered))
            # Half up, from integers (a float's half-even gave 0.7812 for 25/32).
            share = (Decimal(held_visits) / held).quantize(Decimal("0.0001"), ROUND_HALF_UP)
            assert row["visits_per_held_out"] == str(share)
    everything = rows["all"]
    assert result["totals"]["takers"] == everything["takers"] > 0
    assert result["totals"]["incremental_spend"] == everything["incremental_spend"]
    # Campaigns are those that overlap the period: none ended before March.
    assert report(url, "campaign_response", end="2025-02-28")["rows"] == []
    assert report(url, "campaign_response", start="2025-03-22")["rows"] == []


# -- both backends --------------------------------------------------------------------------


def test_sqlite_and_postgresql_give_the_same_reports(sqlite_url: str, pg_url: str) -> None:
    for name in REPORTS:
        on_sqlite, on_postgresql = report(sqlite_url, name), report(pg_url, name)
        if name == "campaign_model":  # each backend fitted (and stored) its own, just now
            for result in (on_sqlite, on_postgresql):
                assert result["totals"].pop("fitted_at")
        assert on_sqlite == on_postgresql, name


def test_formats(sqlite_url: str, tmp_path: Path) -> None:
    result = report(sqlite_url, "sales")
    text = render(result, "csv")
    assert text.splitlines()[0] == "by,key,spend,receipts,members"
    assert len(text.splitlines()) == len(result["rows"]) + 1
    page = render(result, "html")
    assert page.count("<svg") == 3 and "Sales by hour" in page
    assert json.loads(render(result, "json")) == result


def test_campaign_formats(sqlite_url: str) -> None:
    response = report(sqlite_url, "campaign_response")
    assert render(response, "csv").splitlines()[0].startswith("campaign,campaign_id,from,to,")
    page = render(response, "html")
    assert page.count("<svg") == 2 and "Offered against hold-out" in page
    assert "Incremental spend by segment" in page
    model = report(sqlite_url, "campaign_model")
    assert render(model, "csv").splitlines()[0] == (
        "feature,kind,coefficient,odds_ratio,effect,description"
    )
    page = render(model, "html")
    assert page.count("<svg") == 1 and "Response model" in page and "AUC" in page
    assert model["period"] == {"from": None, "to": None, "store": None, "campaign": None}
    code, answer = cli(None, "hq", "report", "ranking", "--db", sqlite_url, "--campaign", "x")
    assert (code, answer["error"]) == (2, "invalid_option"), answer


def test_clusters_partition_the_segmented_members(sqlite_url: str) -> None:
    pytest.importorskip("sklearn")
    result = report(sqlite_url, "clusters")
    segmented = report(sqlite_url, "segments")["totals"]["members"]
    assert 2 <= result["totals"]["k"] <= 8
    assert sum(row["size"] for row in result["rows"]) == result["totals"]["members"] == segmented
    assert str(result["totals"]["k"]) in result["totals"]["tried"]
    for row in result["rows"]:
        assert row["description"] and row["top_categories"]
