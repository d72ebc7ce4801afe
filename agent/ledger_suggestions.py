"""What a member answered to HQ's suggestions at the counter (issue 15;
``agent.suggestions`` holds what HQ sent to this till)."""

from __future__ import annotations

import sqlite3

from agent import fields
from agent import offers as till_offers
from agent import suggestions as till_suggestions
from agent.entries import Kind, SuggestionAnswer
from agent.errors import InvalidInput, Refused
from agent.ledger_context import LedgerContext, Record
from agent.ledger_reads import LedgerReads
from agent.privacy_tables import is_erased
from agent.projection import Effects
from agent.results import ListedSuggestion, OfferShown, StoreSuggestions, SuggestionRecorded


class LedgerSuggestions:
    def __init__(self, context: LedgerContext, reads: LedgerReads, record: Record) -> None:
        # record: the ledger's one write path (agent.ledger.Ledger._record)
        self.context, self.reads, self.record = context, reads, record

    def record_answer(
        self, ref: str, suggestion: str, outcome: str, staff: str | None = None
    ) -> SuggestionRecorded:
        """Record the member's answer to one of HQ's suggestions, once per suggestion
        on this till: the same answer again is a replay (nothing written), another one
        ``already_recorded``. Accepting does not take the suggestion's offer: the
        counter takes it into the sale (``agent.ledger_offers``), which checks it."""
        suggestion_id = _suggestion_id(suggestion)
        said, who = _outcome(outcome), fields.staff(staff)
        day = self.context.today()

        def decide(conn: sqlite3.Connection) -> SuggestionAnswer | SuggestionRecorded:
            held = till_suggestions.suggestion(conn, suggestion_id)
            # The suggestion names its member: a store's list answers for members
            # enrolled at other stores, whom this till knows by card only.
            if held is not None and ref.strip() == held["member_id"]:
                member: str | None = str(held["member_id"])
            else:
                member = self.reads.resolve(ref, conn).member_id
            if held is None or member is None or held["member_id"] != member:
                raise Refused(
                    "unknown_suggestion",
                    f"suggestion: no suggestion {suggestion_id} for this member here",
                )
            if is_erased(conn, member):
                raise Refused("member_erased", "member: this member's data was erased")
            done = till_suggestions.answer_of(conn, suggestion_id)
            if done is not None:
                if done[1] != said:
                    raise Refused(
                        "already_recorded",
                        f"suggestion: {suggestion_id} was answered {done[1]!r} on this till",
                        {"outcome": done[1]},
                    )
                return SuggestionRecorded(
                    member_id=member,
                    suggestion=suggestion_id,
                    reason=str(held["reason"]),
                    outcome=said,
                    replayed=True,
                )
            return SuggestionAnswer(
                member_id=member,
                suggestion=suggestion_id,
                reason=str(held["reason"]),
                outcome=said,
                day=day.isoformat(),
            )

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, body: SuggestionAnswer
        ) -> SuggestionRecorded:
            return SuggestionRecorded(
                member_id=body.member_id,
                suggestion=body.suggestion,
                reason=body.reason,
                outcome=body.outcome,
                replayed=False,
            )

        return self.record(Kind.SUGGESTION_ANSWER, who, decide, finish)

    def store_list(self, store: str) -> StoreSuggestions:
        """Today's suggestions for the members who shop at ``store`` most, for its
        in-store advisors: the name this till knows, the reason, the text, the offer
        while the counter can take it, the last visit; never a phone number."""
        store = fields.place(store, "store")
        conn, day = self.context.store.conn, self.context.today()
        offers: dict[str, dict[str, OfferShown]] = {}
        listed = []
        for line in till_suggestions.store_suggestions(conn, store, day):
            if line.member_id not in offers:
                shown = till_offers.offers_for(conn, line.member_id, day)
                offers[line.member_id] = {offer.offer_id: offer for offer in shown}
            listed.append(
                ListedSuggestion(
                    id=line.suggestion_id,
                    member_id=line.member_id,
                    name=self.reads.name_of(conn, line.member_id),
                    reason=line.reason,
                    text=line.text,
                    last_visit=line.last_visit or None,
                    valid_to=line.valid_to,
                    offer=offers[line.member_id].get(line.offer_id),
                )
            )
        return StoreSuggestions(store=store, day=day.isoformat(), suggestions=tuple(listed))


def _suggestion_id(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not till_suggestions.SUGGESTION_ID.fullmatch(text):
        raise InvalidInput(
            "invalid_suggestion", "suggestion: give the suggestion's id as HQ sent it"
        )
    return text


def _outcome(value: object) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in till_suggestions.OUTCOMES:
        raise InvalidInput(
            "invalid_outcome",
            f"outcome: one of {', '.join(till_suggestions.OUTCOMES)}, not {value!r}",
        )
    return text
