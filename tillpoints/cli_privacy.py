"""Member privacy on the command line (issue 17): the till's ``consent`` and HQ's
``hq member erase|export|consent|retention`` (``sync.hq.scrub``)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass

from agent.privacy import marketing_flag
from agent.results import ConsentRecorded
from sync.hq.db import HQStore
from tillpoints.cli_ledger import open_ledger
from tillpoints.cli_sync import _db_arg, _with_store
from tillpoints.commands import Command, Context, Result


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _consent_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--member", required=True, help="member id, card number or QR payload")
    parser.add_argument("--marketing", required=True, help="yes (consents) or no (withdraws)")
    parser.add_argument("--staff")


def _consent(ctx: Context) -> ConsentRecorded:
    marketing = marketing_flag(ctx.args.marketing)  # checked before the ledger opens
    ledger = open_ledger(ctx)
    try:
        return ledger.consent(ctx.args.member, marketing, ctx.args.staff)
    finally:
        ledger.close()


def who_runs() -> str:
    """Who runs an HQ command, for HQ's audit log."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _member_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument("--member", required=True, help="the member id")


def _erase_args(parser: argparse.ArgumentParser) -> None:
    _member_args(parser)
    parser.add_argument("--reason", required=True, help="why (kept in HQ's audit log)")


def _erase(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.scrub import cli_operator, erase

    now = _now()
    return erase(store, cli_operator(who_runs(), now), args.member, args.reason, now)


def _export(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.scrub import export

    return export(store, args.member, _now())


def _hq_consent_args(parser: argparse.ArgumentParser) -> None:
    _member_args(parser)
    parser.add_argument("--marketing", required=True, help="yes or no")


def _hq_consent(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.scrub import cli_operator, consent

    now = _now()
    return consent(store, cli_operator(who_runs(), now), args.member, args.marketing, now)


def _retention_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument(
        "--lapsed-days",
        type=_days,
        help="erase members with no activity for this many days (default: hq_meta "
        "privacy_retention_days, else 1095)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list them, write nothing")


def _days(text: str) -> int:
    from sync.errors import invalid

    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 100_000:
        raise invalid("invalid_lapsed_days", "lapsed-days: a whole number of days >= 1")
    return int(text)


def _retention(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.scrub import cli_operator, retention

    now = _now()
    return retention(store, cli_operator(who_runs(), now), args.lapsed_days, args.dry_run, now)


COMMANDS = [
    Command(
        "consent",
        "record a member's marketing consent (yes) or withdrawal (no)",
        _consent,
        _consent_args,
    ),
    Command(
        "hq member erase",
        "erase a member's personal data at HQ and, at their next sync, on every till",
        _with_store(_erase),
        _erase_args,
    ),
    Command(
        "hq member export",
        "everything HQ holds about a member, as JSON",
        _with_store(_export),
        _member_args,
    ),
    Command(
        "hq member consent",
        "HQ's record of a member's marketing consent (audited)",
        _with_store(_hq_consent),
        _hq_consent_args,
    ),
    Command(
        "hq member retention",
        "erase the personal data of members lapsed longer than the retention period",
        _with_store(_retention),
        _retention_args,
    ),
]
