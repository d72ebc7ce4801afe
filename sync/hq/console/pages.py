"""The console's pages: plain server-rendered HTML in the reports' look.

Same stylesheet as the reports (``sync.hq.insight.page.STYLE``), no script, no
external asset. Every value goes through ``html.escape`` (``svg.e``); every form
that changes anything is a POST carrying the session's CSRF token, and is shown
only to a role that may send it (the server checks again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sync.hq.insight.operators import ALLOWED, Operator
from sync.hq.insight.page import STYLE
from sync.hq.insight.svg import e

CONSOLE = "/console"
EXTRA_STYLE = (
    "nav{display:flex;gap:18px;flex-wrap:wrap}nav a{color:#93c5fd;text-decoration:none}"
    "nav a.on{color:#fff;font-weight:bold}"
    "header form{display:inline;margin:0}header button{padding:3px 10px;font-size:13px;"
    "background:#374151}"
    "form.act{display:flex;gap:8px;align-items:end;flex-wrap:wrap;margin:4px 0}"
    "form.act input,form.act select{font-size:14px;padding:4px 6px;border:1px solid #9ca3af;"
    "border-radius:4px}form.act label{font-size:12px;color:#374151;display:flex;"
    "flex-direction:column;gap:2px}"
    "button.danger{background:#b91c1c}"
    "tr.stale td{background:#fef3c7}tr.frozen td{background:#fee2e2}"
    ".pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;"
    "background:#e5e7eb}.pill.bad{background:#fecaca}.pill.warn{background:#fde68a}"
    ".pill.ok{background:#bbf7d0}"
    ".wide{overflow-x:auto;max-width:100%}"
    "@media (max-width:800px){main{padding:12px}td,th{padding:3px 5px}}"
)
PAGES = (
    ("members", "Members"),
    ("devices", "Tills"),
    ("alerts", "Alerts"),
    ("campaigns", "Campaigns"),
    ("audit", "Audit log"),
)


def may(who: Operator, action: str) -> bool:
    return who.role in ALLOWED.get(action, frozenset())


def layout(title: str, current: str, who: Operator, csrf: str | None, body: str) -> str:
    nav = "".join(
        f"<a href='{CONSOLE}/{name}'{' class=on' if name == current else ''}>{e(label)}</a>"
        for name, label in PAGES
    )
    out = (
        f"<form method='post' action='{CONSOLE}/logout'>{hidden(csrf)}"
        "<button type='submit'>sign out</button></form>"
        if csrf
        else ""
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(title)}</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>"
        f"<header><h1>tillpoints HQ console</h1><nav>{nav}"
        "<a href='/v1/reports'>Reports</a></nav>"
        f"<span class='who'>signed in as {e(who.name)} ({e(who.role)}) {out}</span></header>"
        f"<main><h2>{e(title)}</h2>{body}</main></body></html>"
    )


def hidden(csrf: str | None) -> str:
    return f"<input type='hidden' name='csrf' value='{e(csrf)}'>" if csrf else ""


def table(head: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """``rows`` hold HTML already escaped by the caller."""
    if not rows:
        return "<p class='empty'>nothing to show</p>"
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join(
        f"<tr{' class=' + repr(classes[i]) if i < len(classes) and classes[i] else ''}>"
        + "".join(f"<td>{cell}</td>" for cell in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return (
        f"<div class='wide'><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def pill(text: str, kind: str = "") -> str:
    return f"<span class='pill {e(kind)}'>{e(text)}</span>"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def members_page(
    who: Operator, csrf: str | None, query: str | None, found: dict[str, Any] | None, how: str
) -> str:
    search = (
        f"<form class='filter' method='get' action='{CONSOLE}/members'>"
        "<label>card number, member id or phone<input type='search' name='q' size='32' "
        f"value='{e(query or '')}' autofocus></label><button type='submit'>find</button></form>"
    )
    if query is None:
        return layout("Members", "members", who, csrf, search)
    if found is None:
        body = search + f"<p class='empty'>no member found for {e(query)}</p>"
        return layout("Members", "members", who, csrf, body)
    tiles = (
        "<div class='tiles'>"
        + "".join(
            f"<div class='tile'><div class='k'>{e(k)}</div><div class='v"
            f"{' long' if len(str(v)) > 12 else ''}'>{e(v)}</div></div>"
            for k, v in (
                ("member", found["member_id"]),
                ("name", found["name"] or "-"),
                ("balance", f"{found['balance']:,}"),
                ("tier", found["tier"]),
                ("home store", found["enrolled_store"] or "-"),
            )
        )
        + "</div>"
    )
    block = may(who, "block_card")
    card_rows = []
    for card in found["cards"]:
        state = pill(card["state"], "ok" if card["state"] == "active" else "bad")
        note = (
            e(f"by {card['blocked_by']} at {card['blocked_at']}: {card['reason']}")
            if card["state"] == "blocked"
            else ""
        )
        action = ""
        if block and card["state"] == "active":
            action = (
                f"<form class='act' method='post' action='{CONSOLE}/cards/block'>{hidden(csrf)}"
                f"<input type='hidden' name='card' value='{e(card['card'])}'>"
                f"<input type='hidden' name='q' value='{e(query)}'>"
                "<label>why<input name='reason' required maxlength='500' "
                "placeholder='reported lost'></label>"
                "<button class='danger' type='submit'>block card</button></form>"
            )
        card_rows.append([e(card["card"]), state, note, action])
    lots = [[e(lot["expires_on"]), e(f"{lot['points']:,}")] for lot in found["expiring"]]
    visits = [
        [
            e(v["at"]),
            e(v["store"]),
            e(v["till"]),
            e(v["kind"]),
            e(v["receipt"] or ""),
            e(f"{v['amount'] / 100:,.2f}" if v["amount"] else ""),
            e(f"{v['points']:+,}"),
            e(v["offer"] or ""),
        ]
        for v in found["visits"]
    ]
    body = (
        search
        + f"<p class='muted'>found by {e(how)}</p>"
        + tiles
        + "<h2>Cards</h2>"
        + table(("card", "state", "note", ""), card_rows)
        + "<h2>Points expiring</h2>"
        + table(("expires on", "points"), lots)
        + f"<h2>Visits at every store, newest first ({len(visits)})</h2>"
        + table(("when", "store", "till", "what", "receipt", "amount", "points", "offer"), visits)
    )
    return layout(f"Member {found['member_id']}", "members", who, csrf, body)


def devices_page(who: Operator, csrf: str | None, fleet: dict[str, Any]) -> str:
    rows, classes = [], []
    unfreeze = may(who, "unfreeze_device")
    for d in fleet["devices"]:
        state = (
            pill("frozen", "bad")
            if d["frozen"]
            else pill("stale", "warn")
            if d["stale"]
            else pill("ok", "ok")
        )
        action = unfreeze_form(csrf, d["device_id"], "devices") if d["frozen"] and unfreeze else ""
        skew = d["clock_skew_s"]
        rows.append(
            [
                e(d["store"]),
                e(d["till"]),
                f"<code>{e(d['device_id'][:16])}</code>",
                state,
                e(d["last_sync"] or "never"),
                e(_duration(d["since_upload_s"])),
                e(f"{d['acked_seq']:,}"),
                e("-" if skew is None else f"{skew:+d} s"),
                e(d["software"] or "-"),
                e(d["frozen_reason"] or ""),
                action,
            ]
        )
        classes.append("frozen" if d["frozen"] else "stale" if d["stale"] else "")
    body = (
        f"<p class='muted'>{len(rows)} tills; a till stands out when it has not synced for "
        f"{fleet['stale_after_hours']} hours (<code>hq devices --stale-hours</code>).</p>"
        + table(
            (
                "store",
                "till",
                "device",
                "state",
                "last sync",
                "since last upload",
                "acknowledged seq",
                "clock skew",
                "software",
                "frozen because",
                "",
            ),
            rows,
            classes,
        )
    )
    return layout("Tills", "devices", who, csrf, body)


def unfreeze_form(csrf: str | None, device: str, back: str) -> str:
    return (
        f"<form class='act' method='post' action='{CONSOLE}/devices/unfreeze'>{hidden(csrf)}"
        f"<input type='hidden' name='device' value='{e(device)}'>"
        f"<input type='hidden' name='back' value='{e(back)}'>"
        "<label>why<input name='reason' required maxlength='500'></label>"
        "<button type='submit'>unfreeze</button></form>"
    )


def _detail(alert: dict[str, Any]) -> str:
    # Phone keys identify a person across stores: the console never shows them.
    skip = {"key", "kind", "device", "raised_at", "acknowledged", "device_frozen", "phone_key"}
    return ", ".join(f"{k}: {v}" for k, v in sorted(alert.items()) if k not in skip)


def alerts_page(who: Operator, csrf: str | None, alerts: list[dict[str, Any]]) -> str:
    ack, unfreeze = may(who, "acknowledge_alert"), may(who, "unfreeze_device")
    open_rows, done_rows = [], []
    for a in alerts:
        cells = [
            pill(a["kind"].replace("_", " "), "bad"),
            e(a.get("raised_at") or ""),
            f"<code>{e((a.get('device') or '')[:16])}</code>",
            e(_detail(a)),
        ]
        if a["acknowledged"] is None:
            forms = ""
            if ack:
                forms += (
                    f"<form class='act' method='post' action='{CONSOLE}/alerts/ack'>"
                    f"{hidden(csrf)}<input type='hidden' name='alert' value='{e(a['key'])}'>"
                    "<label>note<input name='note' required maxlength='500'></label>"
                    "<button type='submit'>acknowledge</button></form>"
                )
            if unfreeze and a["device_frozen"] and a.get("device"):
                forms += unfreeze_form(csrf, str(a["device"]), "alerts")
            open_rows.append([*cells, forms])
        else:
            done = a["acknowledged"]
            done_rows.append([*cells, e(f"{done['operator']} at {done['at']}: {done['note']}")])
    body = (
        table(("alert", "raised", "device", "detail", ""), open_rows)
        + "<h2>Acknowledged</h2>"
        + table(("alert", "raised", "device", "detail", "acknowledged"), done_rows)
    )
    return layout(f"Open alerts ({len(open_rows)})", "alerts", who, csrf, body)


def audit_page(who: Operator, csrf: str | None, rows: list[dict[str, Any]]) -> str:
    cells = [
        [e(r["at"]), e(r["operator"]), e(r["role"]), e(r["action"]), e(r["target"]), e(r["reason"])]
        for r in rows
    ]
    body = "<p class='muted'>Every console action: who, when, what, why (newest first).</p>"
    return layout(
        "Audit log",
        "audit",
        who,
        csrf,
        body + table(("when", "who", "role", "action", "what", "why"), cells),
    )


def campaigns_page(
    who: Operator,
    csrf: str | None,
    form: dict[str, str],
    preview: dict[str, Any] | None,
    problem: str | None,
    listed: list[dict[str, Any]],
) -> str:
    def field(name: str, label: str, kind: str = "text", hint: str = "") -> str:
        return (
            f"<label>{e(label)}<input type='{kind}' name='{name}' value='{e(form.get(name, ''))}'"
            f" placeholder='{e(hint)}'></label>"
        )

    fields = (
        field("name", "name", hint="Spring 2026")
        + field("target", "target", hint="segment:at_risk or store:S001")
        + field("offer", "offer", hint="multiplier:2, voucher:5.00 or gift:TEXT")
        + field("title", "title (optional)")
        + field("from", "from", "date")
        + field("to", "to", "date")
        + field("holdout", "hold-out share", hint="0.1")
    )
    note = ""
    if problem:
        note = f"<p class='muted'>{pill('not valid', 'bad')} {e(problem)}</p>"
    elif preview is not None:
        note = (
            f"<p>{pill('audience', 'ok')} {e(preview['target'])}: "
            f"<b>{preview['targeted']:,}</b> members, {preview['offered']:,} offered, "
            f"{preview['held_out']:,} held out ({e(preview['holdout'])}).</p>"
        )
    add = (
        f"<form class='act' method='post' action='{CONSOLE}/campaigns'>{hidden(csrf)}"
        + "".join(
            f"<input type='hidden' name='{k}' value='{e(v)}'>"
            for k, v in form.items()
            if k != "csrf"
        )
        + "<button type='submit'>add this campaign</button></form>"
        if preview is not None and may(who, "add_campaign")
        else ""
    )
    rows = [
        [e(c.get("name", "")), e(c.get("target", "")), e(c.get("offer", "")),
         e(c.get("from", "")), e(c.get("to", "")), e(c.get("offered", ""))]
        for c in listed
    ]  # fmt: skip
    body = (
        "<p class='muted'>Fill in the campaign and preview its audience; then add it.</p>"
        f"<form class='act' method='get' action='{CONSOLE}/campaigns'>{fields}"
        "<button type='submit' name='preview' value='1'>preview audience</button></form>"
        + note
        + add
        + "<h2>Campaigns</h2>"
        + table(("name", "target", "offer", "from", "to", "offered"), rows)
    )
    return layout("Campaigns", "campaigns", who, csrf, body)
