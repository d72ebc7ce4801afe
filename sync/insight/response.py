"""``hq report campaign_response``: did the offer change what members did?

For each campaign and each segment (as assigned), the offered arm against the
hold-out arm over the campaign's days: members, take-up (offered members who
took their offer at some till), spend and visits per member (``ins_sales``:
earn amounts minus refunds, the same spend as every report), and the
incremental spend: (offered per member - hold-out per member) x offered members.
A row with segment ``all`` sums each campaign. Ratios and money are computed in
Python from integer sums, so both backends print the same digits.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from agent.money import format_amount
from sync.errors import invalid
from sync.hqdb import HQStore
from sync.insight.campaigns import ensure_tables, refresh_takes
from sync.insight.reports import Report

_ARMS = (
    "SELECT c.campaign_id, c.name, m.segment, m.arm, COUNT(*), "
    "SUM(CASE WHEN t.n IS NULL THEN 0 ELSE 1 END), SUM(COALESCE(t.value, 0)), "
    "SUM(COALESCE(t.points, 0)), SUM(COALESCE(s.spend, 0)), SUM(COALESCE(s.visits, 0)) "
    "FROM cmp_members m JOIN cmp_campaigns c ON c.campaign_id = m.campaign_id "
    "LEFT JOIN (SELECT offer_id, COUNT(*) AS n, SUM(value) AS value, SUM(points) AS points "
    "FROM cmp_takes GROUP BY offer_id) t ON t.offer_id = m.offer_id "
    "LEFT JOIN (SELECT m2.campaign_id, m2.member_id, SUM(s.amount) AS spend, "
    "COUNT(DISTINCT CASE WHEN s.kind = 'earn' THEN s.device || ':' || s.receipt END) AS visits "
    "FROM cmp_members m2 JOIN cmp_campaigns c2 ON c2.campaign_id = m2.campaign_id "
    "JOIN ins_sales s ON s.member = m2.member_id AND s.day >= c2.valid_from "
    "AND s.day <= c2.valid_to AND s.kind IN ('earn', 'refund') "
    "GROUP BY m2.campaign_id, m2.member_id) s "
    "ON s.campaign_id = m.campaign_id AND s.member_id = m.member_id "
    "WHERE {where} GROUP BY c.campaign_id, c.name, m.segment, m.arm"
)


def _money(value: Fraction | None) -> str | None:
    return None if value is None else format_amount(round(value))


def _dec(part: int, whole: int) -> str:
    """part/whole with four decimals, rounded half up, from integers only."""
    scaled = (part * 10_000 * 2 + whole) // (2 * whole)
    return f"{scaled // 10_000}.{scaled % 10_000:04d}"


def _row(campaign: str, name: str, segment: str, arms: dict[str, list[int]]) -> dict[str, Any]:
    offer = arms.get("offer", [0, 0, 0, 0, 0, 0])
    hold = arms.get("holdout", [0, 0, 0, 0, 0, 0])
    offered, held = offer[0], hold[0]
    per_offer = Fraction(offer[4], offered) if offered else None
    per_hold = Fraction(hold[4], held) if held else None
    lift = per_offer - per_hold if per_offer is not None and per_hold is not None else None
    return {
        "campaign": name,
        "campaign_id": campaign,
        "segment": segment,
        "offered": offered,
        "held_out": held,
        "takers": offer[1],
        "take_up": _dec(offer[1], offered) if offered else None,
        "voucher_value": format_amount(offer[2]),
        "bonus_points": offer[3],
        "spend_offered": format_amount(offer[4]),
        "spend_held_out": format_amount(hold[4]),
        "spend_per_offered": _money(per_offer),
        "spend_per_held_out": _money(per_hold),
        "visits_per_offered": _dec(offer[5], offered) if offered else None,
        "visits_per_held_out": _dec(hold[5], held) if held else None,
        "incremental_spend_per_member": _money(lift),
        "incremental_spend": _money(lift * offered if lift is not None else None),
    }


def campaign_response(store: HQStore, campaign: str | None = None) -> Report:
    from sync.insight.facts import refresh

    refresh(store)
    ensure_tables(store)
    refresh_takes(store)
    where, params = "1 = 1", []
    with store.read() as tx:
        if campaign is not None:
            found = tx.one(
                "SELECT campaign_id FROM cmp_campaigns WHERE name = ? OR campaign_id = ?",
                (campaign, campaign),
            )
            if found is None:
                raise invalid("unknown_campaign", f"campaign: no campaign {campaign[:60]!r}")
            where, params = "c.campaign_id = ?", [str(found[0])]
        rows = tx.all(_ARMS.replace("{where}", where), params)
    by: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(dict)
    for cid, name, segment, arm, *figures in rows:
        numbers = [int(value or 0) for value in figures]
        for key in ((str(cid), str(name), str(segment)), (str(cid), str(name), "all")):
            sums = by[key].setdefault(str(arm), [0] * len(numbers))
            for index, value in enumerate(numbers):
                sums[index] += value
    out = [_row(cid, name, segment, arms) for (cid, name, segment), arms in sorted(by.items())]
    everything = [row for row in out if row["segment"] == "all"]
    totals: dict[str, Any] = {
        "campaigns": len(everything),
        "offered": sum(row["offered"] for row in everything),
        "held_out": sum(row["held_out"] for row in everything),
        "takers": sum(row["takers"] for row in everything),
    }
    increments = [row["incremental_spend"] for row in everything if row["incremental_spend"]]
    totals["incremental_spend"] = format_amount(
        sum(round(Fraction(text) * 100) for text in increments)
    )
    return {"report": "campaign_response", "rows": out, "totals": totals}
