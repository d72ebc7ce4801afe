"""``hq report campaign_response``: did the offer change what members did?

For each campaign and each segment (as assigned), the offered arm against the
hold-out arm over the campaign's days: members, take-up (offered members who
took their offer at some till), spend and visits per member (``ins_sales``:
earn amounts minus refunds, the same spend as every report), and the
incremental spend: (offered per member - hold-out per member) x offered members;
and what offered members answered to the campaign's suggestion at the counter
(``suggestion_accepted``, ``_declined``, ``_later``: issue 15).
A row with segment ``all`` sums each campaign. Ratios and money are computed in
Python from integer sums, so both backends print the same digits.

Like every report it has a period: the campaigns whose days overlap ``--from`` ..
``--to`` (``--to`` defaults to the newest day in the data, so a campaign that has
not started is not listed yet), with spend counted over each campaign's days up
to ``--to``; ``--store`` keeps the members whose home store it was at assignment.
Takes are read into ``cmp_takes`` before the snapshot (``refresh_takes``, the
catalog's ``prepare`` step).
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from agent.money import format_amount
from sync.hq.db import Tx
from sync.hq.insight.reports import Period, Report
from sync.hq.insight.takes import find_campaign

_ARMS = (
    "SELECT c.campaign_id, c.name, c.valid_from, c.valid_to, m.segment, m.arm, COUNT(*), "
    "SUM(CASE WHEN t.n IS NULL THEN 0 ELSE 1 END), SUM(COALESCE(t.value, 0)), "
    "SUM(COALESCE(t.points, 0)), SUM(COALESCE(s.spend, 0)), SUM(COALESCE(s.visits, 0)) "
    "FROM cmp_members m JOIN cmp_campaigns c ON c.campaign_id = m.campaign_id "
    "LEFT JOIN (SELECT offer_id, COUNT(*) AS n, SUM(value) AS value, SUM(points) AS points "
    "FROM cmp_takes GROUP BY offer_id) t ON t.offer_id = m.offer_id "
    "LEFT JOIN (SELECT m2.campaign_id, m2.member_id, SUM(s.amount) AS spend, "
    "COUNT(DISTINCT CASE WHEN s.kind = 'earn' THEN s.device || ':' || s.receipt END) AS visits "
    "FROM cmp_members m2 JOIN cmp_campaigns c2 ON c2.campaign_id = m2.campaign_id "
    "JOIN ins_sales s ON s.member = m2.member_id AND s.day >= c2.valid_from "
    "AND s.day <= c2.valid_to AND s.day <= ? AND s.kind IN ('earn', 'refund') "
    "GROUP BY m2.campaign_id, m2.member_id) s "
    "ON s.campaign_id = m.campaign_id AND s.member_id = m.member_id "
    "WHERE {where} GROUP BY c.campaign_id, c.name, c.valid_from, c.valid_to, m.segment, m.arm"
)


def _money(value: Fraction | None) -> str | None:
    return None if value is None else format_amount(round(value))


def decimal_share(part: int, whole: int) -> str:
    """part/whole with four decimals, rounded half up, from integers only."""
    scaled = (part * 10_000 * 2 + whole) // (2 * whole)
    return f"{scaled // 10_000}.{scaled % 10_000:04d}"


# What members answered to the campaign's suggestions at the counter (issue 15,
# ``sync.hq.insight.suggestions``): counters per campaign, segment and outcome.
_ANSWERS = (
    "SELECT m.campaign_id, m.segment, a.outcome, COUNT(*) FROM hq_suggestion_answers a "
    "JOIN hq_suggestions s ON s.suggestion_id = a.suggestion_id "
    "JOIN cmp_members m ON m.campaign_id = s.campaign AND m.member_id = a.member_id "
    "WHERE s.reason = 'campaign' {store} GROUP BY m.campaign_id, m.segment, a.outcome"
)
OUTCOMES = ("accepted", "declined", "later")


def _answers(tx: Tx, period: Period) -> dict[tuple[str, str], dict[str, int]]:
    store, params = ("AND m.store = ?", [period.store]) if period.store else ("", [])
    found: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for cid, segment, outcome, n in tx.all(_ANSWERS.replace("{store}", store), params):
        if str(outcome) in OUTCOMES:
            for key in ((str(cid), str(segment)), (str(cid), "all")):
                found[key][str(outcome)] += int(n)
    return found


def _row(
    campaign: tuple[str, str, str, str],
    segment: str,
    arms: dict[str, list[int]],
    answers: dict[str, int],
) -> dict[str, Any]:
    offer = arms.get("offer", [0, 0, 0, 0, 0, 0])
    hold = arms.get("holdout", [0, 0, 0, 0, 0, 0])
    offered, held = offer[0], hold[0]
    per_offer = Fraction(offer[4], offered) if offered else None
    per_hold = Fraction(hold[4], held) if held else None
    lift = per_offer - per_hold if per_offer is not None and per_hold is not None else None
    return {
        "campaign": campaign[1],
        "campaign_id": campaign[0],
        "from": campaign[2],
        "to": campaign[3],
        "segment": segment,
        "offered": offered,
        "held_out": held,
        "takers": offer[1],
        "take_up": decimal_share(offer[1], offered) if offered else None,
        "voucher_value": format_amount(offer[2]),
        "bonus_points": offer[3],
        "spend_offered": format_amount(offer[4]),
        "spend_held_out": format_amount(hold[4]),
        "spend_per_offered": _money(per_offer),
        "spend_per_held_out": _money(per_hold),
        "visits_per_offered": decimal_share(offer[5], offered) if offered else None,
        "visits_per_held_out": decimal_share(hold[5], held) if held else None,
        "incremental_spend_per_member": _money(lift),
        "incremental_spend": _money(lift * offered if lift is not None else None),
        **{f"suggestion_{outcome}": answers.get(outcome, 0) for outcome in OUTCOMES},
    }


def campaign_response(tx: Tx, period: Period) -> Report:
    """The report (after ``refresh_takes``): one row per campaign and segment."""
    clauses = ["c.valid_from <= ?"]
    params: list[Any] = [period.as_of.isoformat(), period.as_of.isoformat()]
    if period.start:
        clauses.append("c.valid_to >= ?")
        params.append(period.start)
    if period.store:
        clauses.append("m.store = ?")
        params.append(period.store)
    if period.campaign is not None:
        clauses.append("c.campaign_id = ?")
        params.append(find_campaign(tx, period.campaign))
    rows = tx.all(_ARMS.replace("{where}", " AND ".join(clauses)), params)
    by: dict[tuple[tuple[str, str, str, str], str], dict[str, list[int]]] = defaultdict(dict)
    for cid, name, start, end, segment, arm, *figures in rows:
        campaign = (str(cid), str(name), str(start), str(end))
        numbers = [int(value or 0) for value in figures]
        for key in ((campaign, str(segment)), (campaign, "all")):
            sums = by[key].setdefault(str(arm), [0] * len(numbers))
            for index, value in enumerate(numbers):
                sums[index] += value
    # Newest campaign first (the one people ask about); its segments by name, then all.
    campaigns = sorted({campaign for campaign, _ in by}, key=lambda c: (c[2], c[1]), reverse=True)
    answers = _answers(tx, period)
    out = [
        _row(campaign, segment, by[(campaign, segment)], answers.get((campaign[0], segment), {}))
        for campaign in campaigns
        for segment in sorted(
            (segment for c, segment in by if c == campaign), key=lambda s: (s == "all", s)
        )
    ]
    everything = [row for row in out if row["segment"] == "all"]
    totals: dict[str, Any] = {
        "campaigns": len(everything),
        "offered": sum(row["offered"] for row in everything),
        "held_out": sum(row["held_out"] for row in everything),
        "takers": sum(row["takers"] for row in everything),
        **{
            f"suggestion_{outcome}": sum(row[f"suggestion_{outcome}"] for row in everything)
            for outcome in OUTCOMES
        },
    }
    increments = [row["incremental_spend"] for row in everything if row["incremental_spend"]]
    totals["incremental_spend"] = format_amount(
        sum(round(Fraction(text) * 100) for text in increments)
    )
    return {"report": "campaign_response", "rows": out, "totals": totals}
