"""What the cashier reads: refusals, errors and figures in plain words (pure)."""

from __future__ import annotations

import datetime as dt

# Scan refusals (docs/contract.md `decode` codes, and `card_blocked` for a replaced card).
SCAN_REFUSALS = {
    "unreadable": "Could not read the card: please swipe it again.",
    "payment_card": "This is a bank card, not a member card. Its number was not stored.",
    "foreign_card": "This card belongs to another programme: it cannot earn points here.",
    "invalid_code": "This code is not valid: check the card, or look the member up by phone.",
    "expired_code": "This phone code has expired: ask the member to refresh it in the app.",
    "card_blocked": "This card was replaced and is blocked: ask for the new card, or look "
    "the member up by phone (F5).",
}

# Refusals and errors of the operations, where the agent's own message is not the
# most useful thing to show at the counter.
OPERATION_ERRORS = {
    "agent_unreachable": "The till agent is not answering: check that it is running.",
    "insufficient_points": "Not enough points.",
    "bad_pin": "Wrong staff id or PIN.",
    "pin_locked": "Too many wrong PINs: this staff id is locked for a while.",
    "unknown_phone": "No member with this phone on this till.",
    "duplicate_phone": "This phone is already enrolled.",
    "card_in_use": "This card is already issued to a member.",
    "card_blocked": SCAN_REFUSALS["card_blocked"],
    "receipt_conflict": "This receipt number was already used for a different sale.",
}

# Sync older than this shows the till as offline (the rules' default
# `redeem.offline_after_hours`, after which offline redemption limits apply).
OFFLINE_AFTER = dt.timedelta(hours=48)


def scan_refusal(code: str, message: str = "") -> str:
    return SCAN_REFUSALS.get(code, message or f"The card was refused ({code}).")


def operation_error(code: str, message: str) -> str:
    known = OPERATION_ERRORS.get(code)
    if known is None:
        return message or code
    return f"{known} ({message})" if code == "insufficient_points" and message else known


def grouped(card: str) -> str:
    """A card number in groups of four, as printed on the card."""
    return " ".join(card[index : index + 4] for index in range(0, len(card), 4))


def sync_state(last_sync: str | None, now: dt.datetime) -> tuple[bool, str]:
    """(online, words) for the status line, from the agent's `last_sync`."""
    if not last_sync:
        return False, "offline · never synced"
    try:
        when = dt.datetime.fromisoformat(last_sync)
    except ValueError:
        return False, f"offline · last sync {last_sync}"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    local = when.astimezone(now.tzinfo)
    shown = local.strftime("%H:%M") if local.date() == now.date() else f"{local:%Y-%m-%d %H:%M}"
    online = now - when <= OFFLINE_AFTER
    return online, f"{'online' if online else 'offline'} · last sync {shown}"


def readers_state(readers: list[dict[str, object]]) -> tuple[bool, str]:
    """(healthy, words) for the readers: no reader, or one lost, is unhealthy."""
    if not readers:
        return False, "no card reader configured"
    lost = [reader for reader in readers if not reader.get("connected")]
    if lost:
        return False, f"card reader lost ({len(lost)} of {len(readers)})"
    kinds = ", ".join(sorted({str(reader.get("kind", "reader")) for reader in readers}))
    return True, f"card reader ready ({kinds})"
