"""The ``tillpoints`` command line (docs/contract.md).

This is the one place where errors become exit statuses and JSON: every command
returns a result dict or raises an error carrying a stable code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from agent.errors import InvalidInput
from drivers.cards import redact_payment_cards
from drivers.errors import TillpointsError
from tillpoints.commands import Command, Context, Result, as_result, render_plain


def _commands() -> list[Command]:
    # Explicit: each module listed here contributes its COMMANDS.
    from tillpoints import (
        cli_agent,
        cli_insight,
        cli_install,
        cli_ledger,
        cli_privacy,
        cli_readers,
        cli_suggestions,
        cli_sync,
        cli_tools,
    )

    commands: list[Command] = []
    for module in (
        cli_ledger,
        cli_agent,
        cli_readers,
        cli_sync,
        cli_insight,
        cli_install,
        cli_tools,
        cli_privacy,
        cli_suggestions,
    ):
        commands.extend(module.COMMANDS)
    return commands


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so that usage
    errors follow the same JSON and exit-status rules as every other error."""

    def error(self, message: str) -> NoReturn:
        # "tillpoints log verify: ..." names the command; the program's own name is
        # added once, by ``_fail``.
        where = self.prog.removeprefix("tillpoints").strip()
        raise InvalidInput("invalid_usage", f"{where}: {message}" if where else message)


def _add_globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name (docs/contract.md).

    The top-level parser holds the defaults; every command's parser accepts the same
    options with no default of its own (``SUPPRESS``), so a value given before the
    command name is not overwritten by a command parser that did not see it."""
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--json", action="store_true", help="print exactly one JSON object", **default
    )
    parser.add_argument(
        "--state", metavar="DIR", help="state directory (default $TILLPOINTS_STATE)", **default
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default $TILLPOINTS_CONFIG)",
        **default,
    )


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (commands, subcommands, their actions), found by
    walking argparse's own tree: what the global options are added to, and what the
    tests sweep."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.append(child)
                found.extend(subparsers(child))
    return found


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tillpoints", description="Loyalty points at the till: cards, ledger, sync."
    )
    _add_globals(parser, top=True)
    top = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    top.required = True
    groups: dict[tuple[str, ...], argparse._SubParsersAction[_Parser]] = {(): top}
    for command in commands:
        words = tuple(command.name.split())
        # A group per leading word(s): `hq balance`, `hq member erase`.
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                group = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = group.add_subparsers(
                    dest="subcommand" if depth == 1 else f"subcommand{depth}",
                    metavar="SUBCOMMAND",
                    parser_class=_Parser,
                )
                groups[prefix].required = True
        sub = groups[words[:-1]].add_parser(words[-1], help=command.help)
        command.arguments(sub)
        sub.set_defaults(command_obj=command)
    for child in subparsers(parser):
        _add_globals(child, top=False)
    return parser


def _emit(ctx_json: bool, command: Command | None, result: Result) -> None:
    if ctx_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, sort_keys=False) + "\n")
    elif command is not None and not command.quiet:
        text = (command.render or render_plain)(result)
        if text:
            print(text)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before parsing succeeds (a usage error), the JSON question is answered by
    # the word itself, wherever it stands; after, by the parsed option.
    wants_json = "--json" in argv
    commands = _commands()
    try:
        _check_text(argv)
        args = build_parser(commands).parse_args(argv)
        wants_json = bool(args.json)
        ctx = Context.from_args(args)
        command: Command = args.command_obj
        result = as_result(command.run(ctx))
    except TillpointsError as error:
        return _fail(wants_json, error.exit_status, error.as_json())
    except KeyboardInterrupt:
        return _fail(wants_json, 1, {"error": "interrupted", "message": "interrupted"})
    except OSError as error:
        # A full disk or an unwritable directory met outside the ledger's own checks.
        message = f"{error.strerror or error}"
        return _fail(wants_json, 1, {"error": "io_error", "message": message})
    _emit(ctx.json, command, result)
    return 0


def _check_text(argv: list[str]) -> None:
    """Arguments that are not valid UTF-8 reach Python as lone surrogates, which no
    database, log or terminal can take: refuse them, naming the option."""
    for index, word in enumerate(argv):
        if any("\ud800" <= char <= "\udfff" for char in word):
            before = argv[index - 1] if index and argv[index - 1].startswith("--") else None
            where = before or f"argument {index + 1}"
            raise InvalidInput("invalid_text", f"{where}: not valid UTF-8 text")


def _fail(wants_json: bool, status: int, payload: dict[str, Any]) -> int:
    # A message may quote what was typed; a payment card number never goes back out.
    payload = {**payload, "message": redact_payment_cards(str(payload["message"]))}
    if wants_json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stderr.write(f"tillpoints: {payload['message']}\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
