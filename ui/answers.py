"""HQ's suggestions at the counter (issue 15), as the member panel and the store's
list show them, and what a member answered, recorded through the agent's local API
(``POST /v1/suggestions``) by both. Pure but for ``record_answer``, which a thread
worker calls."""

from __future__ import annotations

from typing import Any

from textual.markup import escape

from agent.client import AgentClient
from agent.errors import LedgerError
from agent.suggestion_words import REASON_WORDS, SHOWN_PER_MEMBER, in_words
from ui.messages import SuggestionAnswered

# The keys that record an answer for the suggestion shown first (or highlighted).
ANSWER_KEYS = (("a", "accepted"), ("d", "declined"), ("l", "later"))
ANSWER_HINT = "[b]A[/b] accepted · [b]D[/b] declined · [b]L[/b] later"
OUTCOME_WORDS = {"accepted": "accepted", "declined": "declined", "later": "would think about it"}


def shown_suggestions(member: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The member's suggestions the counter shows: at most two, as the agent sent them."""
    items = (member or {}).get("suggestions")
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and item.get("id")][:SHOWN_PER_MEMBER]


def suggestion_lines(suggestions: list[dict[str, Any]]) -> str:
    """The panel's lines: the first suggestion is the one the keys answer."""
    lines = [f"HQ suggests · {ANSWER_HINT} (the first)"]
    for index, item in enumerate(suggestions):
        mark = "▶" if index == 0 else " "
        lines.append(f"{mark} {escape(in_words(item))}")
    return "\n".join(lines)


def reason_words(reason: object) -> str:
    return REASON_WORDS.get(str(reason), str(reason))


def record_answer(
    client: AgentClient, member_ref: str, suggestion: dict[str, Any], outcome: str
) -> SuggestionAnswered:
    """Send the answer (blocking: call it from a thread worker) and say how it went."""
    body = {"member": member_ref, "suggestion": str(suggestion["id"]), "outcome": outcome}
    try:
        result = client.post("/v1/suggestions", body)
    except LedgerError as error:
        return SuggestionAnswered(
            member_ref, suggestion, outcome, code=error.code, message=error.message
        )
    return SuggestionAnswered(member_ref, suggestion, outcome, result=result)


def answered_words(answer: SuggestionAnswered, who: str) -> str:
    """What the cashier reads once the agent answered (plain text, not markup)."""
    why = reason_words(answer.suggestion.get("reason"))
    if answer.code == "already_recorded":
        return f"{why}: {who}'s answer was already recorded on this till ({answer.message})"
    if answer.code:
        return f"{why}: not recorded: {answer.message or answer.code}"
    again = " (it was already)" if (answer.result or {}).get("replayed") else ""
    said = OUTCOME_WORDS.get(answer.outcome, answer.outcome)
    return f"{why}: recorded that {who} {said}{again}."
