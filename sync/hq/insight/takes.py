"""Campaign tables and the offers taken at the tills (issue 8).

The till takes an offer with an ``offer_take`` journal entry; ``refresh_takes``
reads those entries from the stored journals, by batch cursor like
``sync.hq.insight.facts``, into ``cmp_takes``, and ``offer_alerts`` flags an offer
taken at more than one till (``offer_reused``: two offline tills each allowed it
once).

Tables are created idempotently (``ensure_tables``) from the DDL that HQ's schema
also runs as its named migration ``003_campaigns`` (``sync.hq.schema.CAMPAIGNS_DDL``:
the storage floor holds insight's tables as data and imports no insight code), in
SQL that runs unchanged on SQLite and PostgreSQL.

Kept apart from ``sync.hq.insight.campaigns`` (creating campaigns) because the
response model (``sync.hq.insight.stored_model``) learns from the takes and a
``model:...`` campaign is targeted by that model: both import this module, and
neither imports the other in a circle (tests/test_floors.py).
"""

from __future__ import annotations

import json
from typing import Any

from agent.entries import Kind, OfferTake, readable
from sync.errors import invalid
from sync.hq.db import HQStore, Tx
from sync.hq.insight.batches import EntryRow, follow_batches
from sync.hq.schema import CAMPAIGNS_DDL


def ensure_tables(store: HQStore) -> None:
    with store.write() as tx:
        for statement in CAMPAIGNS_DDL:
            tx.run(statement)
        tx.run("INSERT INTO cmp_state (id, batch_no) VALUES (1, 0) ON CONFLICT DO NOTHING")


def has_tables(tx: Tx, dialect: str) -> bool:
    """Whether campaigns exist at all (inside a read-only snapshot, which cannot
    create them)."""
    if dialect == "postgresql":
        row = tx.one("SELECT to_regclass('cmp_takes') IS NOT NULL")
    else:
        row = tx.one("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'cmp_takes'")
    return bool(row and row[0])


def find_campaign(tx: Tx, campaign: str) -> str:
    """The id of a campaign given by name or id (``unknown_campaign`` otherwise)."""
    found = tx.one(
        "SELECT campaign_id FROM cmp_campaigns WHERE name = ? OR campaign_id = ?",
        (campaign, campaign),
    )
    if found is None:
        raise invalid("unknown_campaign", f"campaign: no campaign {campaign[:60]!r}")
    return str(found[0])


def refresh_takes(store: HQStore) -> int:
    """Read the ``offer_take`` entries of every batch stored since the last refresh."""
    ensure_tables(store)

    def apply(tx: Tx, rows: list[EntryRow]) -> int:
        takes = []
        for device, seq, _ts, kind, text, home in rows:
            body = readable(str(kind), json.loads(str(text)))
            if not isinstance(body, OfferTake):
                continue  # no till writes it: left out (agent.entries.readable)
            takes.append(
                (
                    str(device),
                    int(seq),
                    body.offer_id,
                    body.member_id,
                    str(home),
                    body.day,
                    body.receipt,
                    body.points,
                    body.value,
                )
            )
        tx.many(
            "INSERT INTO cmp_takes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            takes,
        )
        return len(takes)

    return follow_batches(store, "cmp_state", (Kind.OFFER_TAKE,), apply)


def offer_alerts(store: HQStore) -> list[dict[str, Any]]:
    """``offer_reused``: one offer taken at more than one till (each allowed it once,
    offline). Derived from the stored journals each time, like the other alerts."""
    refresh_takes(store)
    found: list[dict[str, Any]] = []
    with store.read() as tx:
        for (offer_id,) in tx.all(
            "SELECT offer_id FROM cmp_takes GROUP BY offer_id HAVING COUNT(*) > 1 ORDER BY 1"
        ):
            takes = tx.all(
                "SELECT device, seq, store, member, day, receipt FROM cmp_takes "
                "WHERE offer_id = ? ORDER BY day, device, seq",
                (offer_id,),
            )
            found.append(
                {
                    "kind": "offer_reused",
                    "offer_id": str(offer_id),
                    "member_id": takes[0][3],
                    "takes": len(takes),
                    "devices": sorted({str(t[0]) for t in takes}),
                    "stores": sorted({str(t[2]) for t in takes}),
                    "receipts": [t[5] for t in takes],
                }
            )
    return found
