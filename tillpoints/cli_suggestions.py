"""HQ's suggestions at the counter on the command line (issue 15): what a member
answered (``suggestion record``) and a store's list for its in-store advisors
(``suggestion list``). ``balance --member`` shows a member's own suggestions."""

from __future__ import annotations

import argparse

from agent.ledger import Ledger
from agent.results import StoreSuggestions, SuggestionRecorded
from agent.suggestion_words import in_words
from agent.suggestions import OUTCOMES
from tillpoints.cli_ledger import _with_ledger
from tillpoints.commands import Command, Result


def _record_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--member", required=True, help="member id, card number or QR payload")
    parser.add_argument("--suggestion", required=True, help="the suggestion's id, as shown")
    parser.add_argument("--outcome", required=True, help=" | ".join(OUTCOMES))
    parser.add_argument("--staff")


def _record(ledger: Ledger, args: argparse.Namespace) -> SuggestionRecorded:
    return ledger.record_suggestion(args.member, args.suggestion, args.outcome, args.staff)


def _render_record(result: Result) -> str:
    again = " (already recorded: nothing written)" if result.get("replayed") else ""
    return f"recorded: {result['member_id']} {result['outcome']} {result['suggestion']}{again}"


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="the store (default: this till's)")


def _list(ledger: Ledger, args: argparse.Namespace) -> StoreSuggestions:
    return ledger.store_suggestions(args.store)


def _render_list(result: Result) -> str:
    lines = result["suggestions"]
    if not lines:
        return f"no suggestions today for the members of store {result['store']}"
    text = f"today's suggestions for the members of store {result['store']} ({result['day']}):"
    for line in lines:
        visit = f"last visit {line['last_visit']}" if line["last_visit"] else "no visit known"
        who = line["name"] or line["member_id"]
        text += f"\n  - {who} ({line['member_id']}, {visit}): {in_words(line)}"
        text += f" (suggestion {line['id']})"
    return text


COMMANDS = [
    Command(
        "suggestion record",
        "record what a member answered to one of HQ's suggestions",
        _with_ledger(_record),
        _record_args,
        _render_record,
    ),
    Command(
        "suggestion list",
        "today's suggestions for this store's members (for in-store advisors)",
        _with_ledger(_list),
        _list_args,
        _render_list,
    ),
]
