"""The campaign charts: did the offer work, and who takes offers.

For a campaign (``campaign_response``): each segment's spend per member in the
offered arm against the hold-out, with the share who took the offer, and the
spend the offer added (or lost) over the hold-out, which can be negative, so
it is drawn either side of zero. For the response model (``campaign_model``):
its hold-out AUC on a gauge from guessing (0.5) to a perfect ranking (1.0), and
each feature's coefficient either side of zero. For HQ's suggestions at the
counter (``suggestions``): acceptance by reason and by store. Drawn by ``sync.hq.insight.svg``,
for the reports pages and the ``--format html`` file alike.
"""

from __future__ import annotations

from typing import Any

from sync.hq.insight.model import SCORES
from sync.hq.insight.reports import Report
from sync.hq.insight.svg import (
    BAR,
    GRID,
    INK,
    MUTED,
    RIGHT,
    TOP,
    W,
    bar_chart,
    diverging_chart,
    e,
    empty_chart,
    money_text,
    number,
    paired_chart,
)

MAX_CAMPAIGNS = 4  # charted on the report's page, newest first; all are in its rows
KIND_NAMES = {"age": "age", "store": "home store", "tier": "tier"}


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _percent(share: Any) -> str:
    return "-" if share is None else f"{number(share) * 100:.1f} %"


def _campaign_rows(response: Report, campaign_id: str) -> tuple[dict[str, Any], list[Any]]:
    """The campaign's ``all`` row and its segment rows, largest offered arm first."""
    rows = [row for row in response["rows"] if row["campaign_id"] == campaign_id]
    whole = next(row for row in rows if row["segment"] == "all")
    segments = [row for row in rows if row["segment"] != "all"]
    segments.sort(key=lambda row: (-int(row["offered"]), row["segment"]))
    return whole, segments


def arms_by_segment(response: Report, campaign_id: str) -> str:
    """Spend per member, offered against hold-out, by segment; take-up under each name."""
    whole, segments = _campaign_rows(response, campaign_id)
    rows = [
        (
            str(row["segment"]).replace("_", " "),
            f"{_percent(row['take_up'])} took, {row['offered']:,} offered",
            number(row["spend_per_offered"]),
            number(row["spend_per_held_out"]),
        )
        for row in segments
    ]
    return paired_chart(
        "Offered against hold-out",
        f"{whole['campaign']}: spend per member, {whole['from']} to {whole['to']}; "
        f"{_percent(whole['take_up'])} took the offer",
        rows,
        ("offered", "held out (no offer)"),
        money_text,
    )


def incremental_by_segment(response: Report, campaign_id: str) -> str:
    """What the offer added over the hold-out, by segment, with the whole campaign first."""
    whole, segments = _campaign_rows(response, campaign_id)
    rows = [whole, *segments]
    return diverging_chart(
        "Incremental spend by segment",
        f"{whole['campaign']}: (offered - hold-out spend per member) x offered members",
        ["all segments" if row is whole else str(row["segment"]).replace("_", " ") for row in rows],
        [number(row["incremental_spend"]) for row in rows],
        money_text,
    )


def newest_campaigns(response: Report, limit: int = MAX_CAMPAIGNS) -> list[str]:
    """Campaign ids, newest first (the report's own order), with an offered arm."""
    seen: list[str] = []
    for row in response["rows"]:
        if row["segment"] == "all" and row["offered"] and row["campaign_id"] not in seen:
            seen.append(str(row["campaign_id"]))
    return seen[:limit]


def response_charts(response: Report, limit: int = MAX_CAMPAIGNS) -> list[str]:
    """Two charts per campaign, newest first; one empty chart when there is none."""
    campaigns = newest_campaigns(response, limit)
    if not campaigns:
        return [
            empty_chart(
                "Offered against hold-out", "campaigns in this period", "no campaign in this period"
            )
        ]
    charts = []
    for campaign in campaigns:
        charts += [arms_by_segment(response, campaign), incremental_by_segment(response, campaign)]
    return charts


def _feature_name(feature: str) -> str:
    if feature in SCORES:
        return SCORES[feature]
    kind, _, value = feature.partition("=")
    return f"{KIND_NAMES.get(kind, kind)} {value}"


def _auc_gauge(auc: float | None) -> tuple[str, int]:
    """A track from 0.5 (guessing) to 1.0 (a perfect ranking) with the AUC marked."""
    left, right, y = 170, W - RIGHT - 150, TOP + 6
    if auc is None:
        note = "AUC: the test members all took, or none did"
        return f"<text x='{left}' y='{y + 10}' font-size='12' fill='{MUTED}'>{e(note)}</text>", 30
    at = left + (right - left) * min(max(auc - 0.5, 0.0), 0.5) / 0.5
    return (
        f"<text x='{left - 8}' y='{y + 10}' font-size='13' fill='{INK}' text-anchor='end'>"
        "hold-out AUC</text>"
        f"<rect x='{left}' y='{y}' width='{right - left}' height='12' fill='{GRID}' rx='6'/>"
        f"<rect x='{left}' y='{y}' width='{at - left:.1f}' height='12' fill='{BAR}' rx='6'>"
        f"<title>AUC {auc:.2f}</title></rect>"
        f"<text x='{right + 8}' y='{y + 10}' font-size='13' font-weight='bold' fill='{INK}'>"
        f"{auc:.2f}</text>"
        f"<text x='{left}' y='{y + 26}' font-size='10' fill='{MUTED}'>0.5 guessing</text>"
        f"<text x='{right}' y='{y + 26}' font-size='10' fill='{MUTED}' text-anchor='end'>"
        "1.0 perfect</text>",
        40,
    )


def model_chart(model: Report) -> str:
    """The response model at a glance: how well it ranks, and what raises take-up."""
    totals = model["totals"]
    auc = totals.get("auc")
    rows = model["rows"][:12]
    fitted = str(totals.get("fitted_at") or "")[:10]
    return diverging_chart(
        "Response model" + (f": AUC {auc:.2f}" if auc is not None else ""),
        f"fitted {fitted} on {_count(totals['campaigns'], 'campaign')}; what raises take-up "
        "(log-odds per standard deviation)",
        [_feature_name(str(row["feature"])) for row in rows],
        [number(row["coefficient"]) for row in rows],
        lambda value: f"{value:+.2f}",
        _auc_gauge(auc),
    )


def suggestion_acceptance(report: Report) -> list[str]:
    """Acceptance (accepted of the answers, in percent) by reason and by store."""
    charts = []
    for key, title in (("reason", "by reason"), ("store", "by store")):
        answers: dict[str, list[int]] = {}
        for row in report["rows"]:
            sums = answers.setdefault(str(row[key]), [0, 0])
            sums[0] += int(row["accepted"])
            sums[1] += int(row["accepted"]) + int(row["declined"]) + int(row["later"])
        shares = sorted(
            ((name, 100.0 * took / answered) for name, (took, answered) in answers.items()
             if answered),
            key=lambda item: (-item[1], item[0]),
        )  # fmt: skip
        charts.append(
            bar_chart(
                f"Suggestions accepted {title}",
                "accepted, in % of the answers recorded at the counter",
                [name.replace("_", " ") for name, _ in shares],
                [round(share, 1) for _, share in shares],
            )
        )
    return charts


def campaign_charts(report: Report) -> list[str]:
    """The charts of a campaign or suggestions report's page or file ([] for any
    other report)."""
    if report["report"] == "campaign_response":
        return response_charts(report)
    if report["report"] == "campaign_model":
        return [model_chart(report)]
    if report["report"] == "suggestions":
        return suggestion_acceptance(report)
    return []
