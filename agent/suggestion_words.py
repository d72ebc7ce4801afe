"""HQ's suggestions in plain words (issue 15): what the counter, the store's list and
``balance`` say. Pure values, with no database, so that the cashier app may import
them (tests/test_floors.py); ``agent.suggestions`` holds the suggestions themselves."""

from __future__ import annotations

from typing import Any

# The counter shows at most this many per member: the two that matter most.
SHOWN_PER_MEMBER = 2
# The reasons (``agent.suggestions.REASONS``) in plain words.
REASON_WORDS = {
    "birthday": "Birthday coming",
    "expiring_points": "Points about to expire",
    "at_risk": "Visits falling off",
    "lapsed": "Not seen for a while",
    "new_member": "New member",
    "campaign": "Campaign offer",
}


def in_words(shown: dict[str, Any]) -> str:
    """One suggestion as JSON (``SuggestionShown.as_json``, or a store list's line) in
    plain words: why, what to say, and the offer where one applies."""
    reason = str(shown.get("reason", ""))
    words = f"{REASON_WORDS.get(reason, reason)}: {shown.get('text', '')}"
    offer = shown.get("offer")
    if isinstance(offer, dict):
        words += f" · offer: {offer.get('title') or offer.get('offer_id')}"
    return words
