"""Helpers for the insight tests: a simulated chain copied verbatim to another
backend, and a campaign whose take-up is planted on one feature.

Takes are written into ``cmp_takes`` directly (what ``refresh_takes`` makes of
stored ``offer_take`` entries): a till round trip is ``test_insight_campaigns``'
job, and the response report and model only read that table.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sync.hq.insight.facts import refresh, set_stores
from sync.hq.insight.model import member_features
from sync.hq.stores import open_store
from tests.sync_helpers import cli

# What a simulated HQ holds besides the facts (which each backend derives itself).
# hq_member_keys: the keys that open sealed enrolments travel with them (issue 17).
CHAIN_TABLES = ("hq_meta", "devices", "entries", "batches", "hq_member_keys")
CAMPAIGN_TABLES = ("cmp_campaigns", "cmp_members", "cmp_takes")


def copy_chain(source_url: str, target_url: str, tables: tuple[str, ...] = CHAIN_TABLES) -> None:
    """The very same rows in another (migrated, empty) HQ, so every report must come
    out identical there, member ids included; store regions too."""
    source, target = open_store(source_url), open_store(target_url)
    try:
        with source.read() as src, target.write() as dst:
            dst.run("DELETE FROM hq_meta")
            for table in tables:
                rows = src.all(f"SELECT * FROM {table}")
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    dst.many(f"INSERT INTO {table} VALUES ({marks})", rows)
            regions = src.all("SELECT store, region FROM ins_stores")
        set_stores(target, regions)
        refresh(target)
    finally:
        target.close()
        source.close()


def rows_of(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One query's rows, in a snapshot of its own."""
    store = open_store(url)
    try:
        with store.read() as tx:
            return tx.all(sql, params)
    finally:
        store.close()


def newest_day(url: str) -> dt.date:
    ((day,),) = rows_of(url, "SELECT MAX(day) FROM ins_sales")
    return dt.date.fromisoformat(str(day))


def everyone_campaign(
    url: str, folder: Path, name: str, start: dt.date, days: int = 21, holdout: str = "0.1"
) -> dict[str, Any]:
    """A gift campaign offered to every enrolled member (``hq campaign add``)."""
    members = [str(m) for (m,) in rows_of(url, "SELECT member_id FROM ins_members")]
    ids = folder / f"{name}.txt"
    ids.write_text("\n".join(members))
    code, made = cli(
        None, "hq", "campaign", "add", "--db", url, "--name", name, "--target",
        f"members:{ids}", "--offer", "gift:Mug", "--from", start.isoformat(), "--to",
        (start + dt.timedelta(days=days - 1)).isoformat(), "--holdout", holdout, "--seed", "1",
    )  # fmt: skip
    assert code == 0, made
    return made


def plant_takes(url: str, name: str, start: dt.date) -> int:
    """Frequent buyers (F score 4-5 the day before the campaign) take the offer of
    campaign ``name`` on its first day, others not, with every eighth offered member
    (in member id order) the other way round: take-up depends on frequency, but
    not perfectly. Returns how many took."""
    store = open_store(url)
    try:
        with store.read() as tx:
            features = member_features(tx, store.dialect, start - dt.timedelta(days=1))
            offered = tx.all(
                "SELECT m.member_id, m.offer_id, m.store, m.campaign_id FROM cmp_members m "
                "JOIN cmp_campaigns c ON c.campaign_id = m.campaign_id "
                "WHERE c.name = ? AND m.arm = 'offer'",
                (name,),
            )
        takes = []
        for number, (member, offer, home, campaign) in enumerate(sorted(offered)):
            known = features.get(str(member))  # enrolled after the campaign's eve: no
            took = known is not None and known["f"] >= 4
            if number % 8 == 0:
                took = not took
            if took:
                day = start.isoformat()
                takes.append((f"sim-{campaign}", number, offer, member, home, day, None, 0, 0))
        with store.write() as tx:
            tx.many("INSERT INTO cmp_takes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", takes)
        return len(takes)
    finally:
        store.close()
