"""The console's printable page of ``hq member export`` (issue 17): everything HQ
holds about one member, for a subject-access request (role viewer or above)."""

from __future__ import annotations

from html import escape as e
from typing import Any

from sync.hq.console.pages import layout, table
from sync.hq.insight.operators import Operator

_PERSONAL = (
    "name",
    "birthday",
    "gender",
    "district",
    "household",
    "consent_marketing",
    "enrolled_at",
    "enrolled_store",
    "enrolled_till",
)


def export_page(who: Operator, csrf: str | None, found: dict[str, Any]) -> str:
    erased = found["erased"]
    head = (
        f"<h2>Member {e(found['member_id'])}</h2>"
        + (
            f"<p class='empty'>personal data erased {e(erased['at'])} by {e(erased['by'])}: "
            f"{e(erased['reason'])}</p>"
            if erased
            else ""
        )
        + table(
            ("field", "value"),
            [(e(name), e("-" if found[name] is None else str(found[name]))) for name in _PERSONAL]
            + [("balance", e(f"{found['balance']:,}"))],
        )
    )
    cards = table(
        ("card", "state"), [(e(card["card"]), e(card["state"])) for card in found["cards"]]
    )
    entries = table(
        ("at", "store", "till", "kind", "receipt", "amount", "points"),
        [
            (
                e(item["at"]),
                e(item["store"]),
                e(item["till"]),
                e(item["kind"]),
                e(item["receipt"] or ""),
                e(str(item["amount"])),
                e(str(item["points"])),
            )
            for item in found["entries"]
        ],
    )
    body = head + "<h3>Cards</h3>" + cards + "<h3>Every entry, every store</h3>" + entries
    return layout(f"Member {found['member_id']}: export", "members", who, csrf, body)
