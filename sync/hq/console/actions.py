"""The console's actions, each one transaction with its audit row.

- ``block_card``: a lost card refused chain-wide. The block is numbered from
  ``batch_clock`` like a batch, so every till's next delta carries it (as a card
  with state ``blocked``, ``sync.hq.directory``) after the batches before it.
- ``acknowledge``: an alert seen, with a note; it leaves the open list.
- ``unfreeze_device``: a frozen till may upload again (``sync.hq.devices.unfreeze``).
- ``add_campaign``: a campaign from the console's form (``sync.hq.insight.campaigns``),
  with ``audience`` to preview how many members it would reach.

The caller has checked the role and the CSRF token (``sync.hq.console.web``);
every bad value is refused here with its own code, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sync.errors import invalid, refused
from sync.hq import devices as hq_devices
from sync.hq.console.audit_log import record
from sync.hq.db import HQStore, Tx, next_batch_no
from sync.hq.insight.operators import Operator
from sync.protocol import utc_text

MAX_REASON = 500
_CARD = re.compile(r"[0-9]{6,32}", re.ASCII)
_DEVICE = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)
_ALERT_KEY = re.compile(r"[a-z_]+:[0-9a-f]{20}|a[0-9]{1,18}", re.ASCII)


def reason_text(value: str | None, field: str = "reason") -> str:
    """Why, as the operator wrote it: required, printable, bounded."""
    text = (value or "").strip()
    if not text:
        raise invalid(f"invalid_{field}", f"{field}: say why (1 to {MAX_REASON} characters)")
    if len(text) > MAX_REASON or not all(c.isprintable() or c in "\n\r\t" for c in text):
        raise invalid(f"invalid_{field}", f"{field}: 1 to {MAX_REASON} printable characters")
    return text


def _field(value: str | None, pattern: re.Pattern[str], code: str, message: str) -> str:
    text = (value or "").strip()
    if not pattern.fullmatch(text):
        raise invalid(code, message)
    return text


def block_card(
    store: HQStore, who: Operator, card: str | None, reason: str | None, now: dt.datetime
) -> dict[str, Any]:
    card = _field(card, _CARD, "invalid_card", "card: the card number's 6 to 32 digits")
    why = reason_text(reason)
    with store.write() as tx:
        known = tx.one("SELECT MIN(member_id), COUNT(*) FROM entries WHERE card = ?", (card,))
        if known is None or not int(known[1]):
            raise refused("unknown_card", "card: HQ has never seen this card", http_status=404)
        if tx.locked("SELECT 1 FROM hq_card_blocks WHERE card = ?", (card,)):
            raise refused("card_already_blocked", "card: already blocked", http_status=409)
        member = known[0]
        record(tx, who, "block_card", card, why, now, {"member_id": member})
        # Numbered last, like a batch (sync.hq.ingest): the clock row is held briefly.
        batch_no = next_batch_no(tx)
        tx.run(
            "INSERT INTO hq_card_blocks (card, member_id, batch_no, blocked_at, operator, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (card, member, batch_no, utc_text(now), who.name, why),
        )
    return {"card": card, "member_id": member, "state": "blocked"}


def acknowledge(
    store: HQStore, who: Operator, key: str | None, note: str | None, now: dt.datetime
) -> dict[str, Any]:
    from sync.hq.console.alerts import every_alert

    key = _field(key, _ALERT_KEY, "invalid_alert", "alert: the key of an open alert")
    why = reason_text(note, "note")
    alert = next((a for a in every_alert(store) if a["key"] == key), None)
    if alert is None:
        raise refused("unknown_alert", "alert: no such alert", http_status=404)
    with store.write() as tx:
        if tx.locked("SELECT 1 FROM hq_alert_acks WHERE alert_key = ?", (key,)):
            raise refused("alert_acknowledged", "alert: already acknowledged", http_status=409)
        tx.run(
            "INSERT INTO hq_alert_acks (alert_key, at, operator, note) VALUES (?, ?, ?, ?)",
            (key, utc_text(now), who.name, why),
        )
        record(tx, who, "acknowledge_alert", key, why, now, {"kind": alert["kind"]})
    return {"alert": key, "kind": alert["kind"], "acknowledged": True}


def unfreeze_device(
    store: HQStore, who: Operator, device: str | None, reason: str | None, now: dt.datetime
) -> dict[str, Any]:
    device = _field(device, _DEVICE, "invalid_device", "device: a device id")
    why = reason_text(reason)
    with store.write() as tx:
        result = hq_devices.unfreeze_in(tx, device)
        record(tx, who, "unfreeze_device", device, why, now, result)
    return result


# The console's campaign form: a segment or a store as target, never members:FILE
# (a path on HQ's disk) nor a model fit (minutes of work behind one request).
FORM_TARGETS = ("segment", "store")
_FIELDS = ("name", "target", "offer", "from", "to", "title", "holdout")


def campaign_values(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form[k] for k in _FIELDS if form.get(k)}
    kind = str(values.get("target", "")).partition(":")[0]
    if kind not in FORM_TARGETS:
        raise invalid("invalid_target", "target: segment:NAME or store:S")
    if form.get("chain_wide"):
        values["chain_wide"] = True
    return values


def audience(store: HQStore, form: dict[str, str]) -> dict[str, Any]:
    """How many members the form's campaign would reach, and how many it would
    hold out, without storing anything."""
    from sync.hq.insight.campaigns import _targets, in_holdout, parse_spec
    from sync.hq.insight.facts import refresh

    spec = parse_spec(campaign_values(form))
    refresh(store)
    with store.read() as tx:
        targets = _targets(tx, spec, store.dialect, None)
    held = sum(1 for member, _, _ in targets if in_holdout(spec.seed, member, spec.holdout_bp))
    return {
        "target": f"{spec.target_kind}:{spec.target}",
        "targeted": len(targets),
        "offered": len(targets) - held,
        "held_out": held,
        "holdout": format(Decimal(spec.holdout_bp) / 10_000, "f"),
    }


def add_campaign(
    store: HQStore, who: Operator, form: dict[str, str], now: dt.datetime
) -> dict[str, Any]:
    from sync.hq.insight.campaigns import add_campaign as add
    from sync.hq.insight.campaigns import parse_spec

    spec = parse_spec(campaign_values(form))
    why = f"{spec.title}: {spec.target_kind}:{spec.target}, {spec.valid_from} to {spec.valid_to}"

    def audit(tx: Tx) -> None:
        record(tx, who, "add_campaign", spec.name, why, now, {"campaign_id": spec.campaign_id})

    return add(store, spec, now, audit=audit)
