"""The ``tillpoints`` command line (CONTRACT.md).

This is the one place where errors become exit statuses and JSON: every command
returns a result dict or raises an error carrying a stable code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from agent.commands import Command, Context, Result, render_plain
from agent.errors import InvalidInput, LedgerError
from drivers.errors import DriverError


def _commands() -> list[Command]:
    # Explicit: each module listed here contributes its COMMANDS.
    from agent import (
        cli_agent,
        cli_insight,
        cli_install,
        cli_ledger,
        cli_readers,
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
    ):
        commands.extend(module.COMMANDS)
    return commands


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so that usage
    errors follow the same JSON and exit-status rules as every other error."""

    def error(self, message: str) -> NoReturn:
        raise InvalidInput("invalid_usage", f"{self.prog}: {message}")


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object")
    parser = _Parser(
        prog="tillpoints",
        description="Loyalty points at the till: cards, ledger, sync.",
        parents=[common],
    )
    parser.add_argument("--state", help="state directory (default $TILLPOINTS_STATE)")
    parser.add_argument("--config", help="configuration file (default $TILLPOINTS_CONFIG)")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    top.required = True
    groups: dict[str, argparse._SubParsersAction[_Parser]] = {}
    for command in commands:
        words = command.name.split()
        if len(words) == 1:
            sub = top.add_parser(words[0], help=command.help, parents=[common])
        else:
            if words[0] not in groups:
                group = top.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser
                )
                groups[words[0]].required = True
            sub = groups[words[0]].add_parser(words[1], help=command.help, parents=[common])
        command.arguments(sub)
        sub.set_defaults(command_obj=command)
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
    wants_json = "--json" in argv
    commands = _commands()
    try:
        args = build_parser(commands).parse_args(argv)
        ctx = Context.from_args(args)
        command: Command = args.command_obj
        result = command.run(ctx)
    except (LedgerError, DriverError) as error:
        return _fail(wants_json, error.exit_status, error.as_json())
    except KeyboardInterrupt:
        return _fail(wants_json, 1, {"error": "interrupted", "message": "interrupted"})
    except OSError as error:
        # A full disk or an unwritable directory met outside the ledger's own checks.
        message = f"{error.strerror or error}"
        return _fail(wants_json, 1, {"error": "io_error", "message": message})
    _emit(ctx.json, command, result)
    return 0


def _fail(wants_json: bool, status: int, payload: dict[str, Any]) -> int:
    if wants_json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stderr.write(f"tillpoints: {payload['message']}\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
