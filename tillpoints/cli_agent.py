"""Commands of the running till: `agent` (the daemon), `status`, `staff add|list`."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from agent import staff
from agent.client import AgentClient
from agent.config import load_config
from agent.daemon import check_journal, ledger_status, run_agent
from agent.errors import InvalidInput, LedgerError
from tillpoints.cli_ledger import open_ledger
from tillpoints.commands import Command, Context, Result


def _agent(ctx: Context) -> Result:
    config = load_config(ctx.config_path)
    run_agent(ctx.state_dir, config)
    return {"stopped": True}


def _status(ctx: Context) -> Result:
    """Ask the running agent; without one, report what the ledger alone can tell."""
    config = load_config(ctx.config_path)
    try:
        result: Result = AgentClient(config.socket, timeout=3.0).get("/v1/status")
        return result
    except LedgerError as error:
        if error.code != "agent_unreachable":
            raise
    ledger = open_ledger(ctx)
    try:
        check_journal(ledger)  # what the agent checks at start, so status says it too
        return {**ledger_status(ledger, time.time()), "readers": [], "agent": "not running"}
    finally:
        ledger.close()


def _render_status(result: Result) -> str:
    head = result["journal_head"]
    lines = [
        f"till {result['store']}/{result['till']} (device {result['device_id']}): "
        f"agent {result['agent']}",
        f"journal: {head['seq']} entries, head {head['hash'][:16]}..., "
        f"{result['journal_bytes']} bytes; {result['unsynced']} not yet synced",
        f"last sync: {result['last_sync'] or 'never'}",
        f"clock: {result['clock']} ({'looks right' if result['clock_ok'] else 'LOOKS WRONG'})",
    ]
    problem = result.get("journal_problem")
    if problem:
        cloned = problem["error"] == "till_restored_from_backup"
        what = "RESTORED FROM BACKUP OR CLONED" if cloned else "JOURNAL DAMAGED"
        lines.append(f"{what}, writes refused ({problem['error']}): {problem['message']}")
    for reader in result["readers"]:
        lines.append(
            f"reader {reader['path']}: {reader['state']}, {reader['scans']} scans, "
            f"{reader['errors']} errors, {reader.get('unreadable', 0)} unreadable, "
            f"last scan {reader['last_scan_at'] or 'never'}"
        )
    if not result["readers"]:
        lines.append("readers: none running")
    return "\n".join(lines)


def _staff_add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", required=True, dest="staff_id")
    parser.add_argument("--role", required=True, choices=staff.ROLES)
    parser.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")


def _staff_add(ctx: Context) -> Result:
    if ctx.args.pin_stdin:
        pin = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        pin = getpass.getpass("PIN: ")
    else:
        raise InvalidInput("invalid_pin", "pin: give it on stdin with --pin-stdin")
    ledger = open_ledger(ctx)
    try:
        with ledger.store.transaction() as conn:
            return staff.add_staff(conn, ctx.args.staff_id, ctx.args.role, pin)
    finally:
        ledger.close()


def _staff_list(ctx: Context) -> Result:
    ledger = open_ledger(ctx)
    try:
        return {"staff": staff.list_staff(ledger.store)}
    finally:
        ledger.close()


COMMANDS = [
    Command("agent", "run the till daemon (systemd Type=notify)", _agent, quiet=True),
    Command(
        "status", "readers, journal, sync and clock of this till", _status, render=_render_status
    ),
    Command("staff add", "add a staff member or change their PIN", _staff_add, _staff_add_args),
    Command("staff list", "list staff ids and roles (never PINs)", _staff_list),
]
