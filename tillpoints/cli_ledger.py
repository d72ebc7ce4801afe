"""Till commands of docs/contract.md that work on the ledger: init, enroll, lookup, card
replace, earn, redeem, refund, balance, adjust, log verify, log export."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from agent import fields
from agent.audit import export_log, verify_file, verify_ledger
from agent.config import load_config
from agent.errors import InvalidInput, LedgerError, VerificationFailed
from agent.ledger import DB_FILE, Ledger
from agent.money import parse_amount
from agent.results import (
    Answer,
    Earned,
    Enrolled,
    Exported,
    Found,
    Redeemed,
    Refunded,
    Standing,
    TillIdentity,
)
from agent.rules import load_rules_file
from agent.suggestion_words import in_words
from drivers.codes import make_dynamic_code
from tillpoints.commands import Command, Context, Result

A = TypeVar("A", bound=Result | Answer)


def open_ledger(ctx: Context) -> Ledger:
    if not (ctx.state_dir / DB_FILE).exists():
        raise LedgerError(
            "not_initialised",
            f"no till ledger in {ctx.state_dir}: run `tillpoints init --store S --till T`",
        )
    return Ledger(ctx.state_dir, load_config(ctx.config_path))


def _with_ledger(
    action: Callable[[Ledger, argparse.Namespace], A],
) -> Callable[[Context], A]:
    def run(ctx: Context) -> A:
        ledger = open_ledger(ctx)
        try:
            return action(ledger, ctx.args)
        finally:
            ledger.close()

    return run


def _lookup(ledger: Ledger, args: argparse.Namespace) -> Found:
    from sync.till_lookup import lookup_at_hq

    return ledger.lookup(args.phone, ask_hq=partial(lookup_at_hq, ledger.state_dir, ledger.store))


# -- init ---------------------------------------------------------------------------


def _init_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True)
    parser.add_argument("--till", required=True)
    parser.add_argument("--rules", type=Path, help="points rules TOML (default: shipped rules)")


def _init(ctx: Context) -> TillIdentity:
    args = ctx.args
    config = load_config(ctx.config_path)
    for name in ("store", "till"):
        fields.place(getattr(args, name), name)
    rules = load_rules_file(args.rules) if args.rules else None
    ledger = Ledger.init(ctx.state_dir, args.store, args.till, rules, config)
    try:
        return ledger.identity()
    finally:
        ledger.close()


# -- members and cards ----------------------------------------------------------------


def _enroll_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True)
    parser.add_argument("--phone", required=True)
    parser.add_argument("--birthday", help="YYYY-MM-DD")
    parser.add_argument("--gender", help="F, M or X")
    parser.add_argument("--district")
    parser.add_argument("--household", help="people in the household")
    parser.add_argument("--card", help="a programme card to bind (default: issue an e-card)")
    parser.add_argument("--consent-marketing", action="store_true")
    parser.add_argument("--staff")


def _enroll(ledger: Ledger, args: argparse.Namespace) -> Enrolled:
    return ledger.enrol(
        name=args.name,
        phone=args.phone,
        birthday=args.birthday,
        gender=args.gender,
        district=args.district,
        household=args.household,
        card=args.card,
        consent_marketing=args.consent_marketing,
        staff=args.staff,
    )


def _lookup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--phone", required=True)


def _member_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--member", required=True, help="member id, card number or QR payload")


def _replace_args(parser: argparse.ArgumentParser) -> None:
    _member_arg(parser)
    parser.add_argument("--card", required=True, help="the new card")
    parser.add_argument("--staff")


def _balance(ledger: Ledger, args: argparse.Namespace) -> Standing:
    return ledger.balance(args.member)


def _render_balance(result: Result) -> str:
    who = result["member_id"] or f"card {result['card']} (not enrolled here)"
    text = (
        f"{who}: {result['balance']} points (worth {result['value']}), tier {result['tier']}; "
        f"{result['available']} spendable now, {result['expiring_30d']} expiring in 30 days"
    )
    suggestions = result.get("suggestions") or []
    if suggestions:
        text += "\nHQ suggests (record the answer with `tillpoints suggestion record`):"
        for shown in suggestions:
            text += f"\n  - {in_words(shown)} (suggestion {shown['id']})"
    return text


# -- points ---------------------------------------------------------------------------


def _earn_args(parser: argparse.ArgumentParser) -> None:
    _member_arg(parser)
    parser.add_argument("--receipt", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--amount", help="receipt total, e.g. 12.30")
    what.add_argument(
        "--line", action="extend", nargs="+", help="CATEGORY:QTY:AMOUNT ... (or repeat --line)"
    )
    parser.add_argument("--staff")


def _earn(ledger: Ledger, args: argparse.Namespace) -> Earned:
    if args.line is not None:
        return ledger.earn(
            args.member, args.receipt, lines=fields.lines(args.line), staff=args.staff
        )
    return ledger.earn(
        args.member, args.receipt, amount=parse_amount(args.amount), staff=args.staff
    )


def _render_earn(result: Result) -> str:
    again = " (already recorded: nothing written)" if result.get("replayed") else ""
    return (
        f"points recorded: +{result['points']} on receipt {result['receipt']}{again}; "
        f"balance {result['balance']}"
    )


def _redeem_args(parser: argparse.ArgumentParser) -> None:
    _member_arg(parser)
    parser.add_argument("--receipt", required=True)
    parser.add_argument("--points", required=True)
    parser.add_argument("--amount", help="receipt total, to apply the maximum share rule")
    parser.add_argument("--staff")


def _redeem(ledger: Ledger, args: argparse.Namespace) -> Redeemed:
    amount = parse_amount(args.amount) if args.amount is not None else None
    return ledger.redeem(args.member, args.receipt, args.points, amount=amount, staff=args.staff)


def _render_redeem(result: Result) -> str:
    return (
        f"redeemed {result['points']} points = {result['value']} off receipt "
        f"{result['receipt']}; balance {result['balance']}"
    )


def _refund_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--receipt", required=True)
    parser.add_argument(
        "--line", action="extend", nargs="+", help="CATEGORY:QTY:AMOUNT ... (or repeat --line)"
    )
    parser.add_argument("--staff")


def _refund(ledger: Ledger, args: argparse.Namespace) -> Refunded:
    lines = fields.lines(args.line) if args.line is not None else None
    return ledger.refund(args.receipt, lines, staff=args.staff)


def _render_refund(result: Result) -> str:
    text = (
        f"refunded {result['refunded']} on receipt {result['receipt']}: points "
        f"{result['points']:+d} ({result['taken']} taken back, {result['returned']} returned); "
        f"balance {result['balance']}"
    )
    if result["negative"]:
        text += "\nThe balance is negative: points already spent were taken back. "
        text += "Redemption is blocked until new purchases repay it."
    return text


def _adjust_args(parser: argparse.ArgumentParser) -> None:
    _member_arg(parser)
    parser.add_argument("--points", required=True, help="signed: 50 or -50")
    parser.add_argument("--reason", required=True)
    parser.add_argument("--staff", required=True)


# -- the journal ----------------------------------------------------------------------


def _verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, help="an exported log (needs --public-key)")
    parser.add_argument("--public-key", help="the device's public key (base64) or a file")


def _verify(ctx: Context) -> Result:
    args = ctx.args
    if (args.file is None) != (args.public_key is None):
        raise InvalidInput("invalid_usage", "--file and --public-key go together")
    if args.file is not None:
        report = verify_file(args.file, args.public_key)
    else:
        ledger = open_ledger(ctx)
        try:
            report = verify_ledger(ledger)
        finally:
            ledger.close()
    result = report.to_json()
    if not report.ok:
        raise VerificationFailed(
            "log_tampered",
            f"journal fails at seq {report.first_bad_seq}: {report.reason}",
            result,
        )
    return result


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path)


def _export(ledger: Ledger, args: argparse.Namespace) -> Exported:
    return export_log(ledger, args.out)


def _qr(ctx: Context) -> Result:
    """What the member's phone would show now: a signed code that rotates every
    30 seconds and that a till checks offline."""
    ledger = open_ledger(ctx)
    try:
        card = ledger.member_card(ctx.args.member)
        secret = ledger.secrets.qr()
    finally:
        ledger.close()
    if secret is None:
        raise LedgerError(
            "qr_not_configured",
            "qr: this till has no QR secret: it comes from HQ at `register`; dynamic codes "
            "are off until then",
        )
    payload, valid_until = make_dynamic_code(card, secret, time.time())
    until = dt.datetime.fromtimestamp(valid_until, dt.UTC).isoformat().replace("+00:00", "Z")
    return {"payload": payload, "valid_until": until, "card": card}


COMMANDS = [
    Command("init", "create this till's ledger and device key", _init, _init_args),
    Command(
        "enroll",
        "enrol a member at the counter",
        _with_ledger(_enroll),
        _enroll_args,
        lambda r: f"enrolled {r['member_id']} with card {r['card']} ({r['card_kind']})",
    ),
    Command(
        "lookup",
        "find a member by phone",
        _with_ledger(_lookup),
        _lookup_args,
    ),
    Command(
        "card replace",
        "replace a lost card (the old one is blocked)",
        _with_ledger(lambda ledger, args: ledger.card_replace(args.member, args.card, args.staff)),
        _replace_args,
    ),
    Command("earn", "record points for a sale", _with_ledger(_earn), _earn_args, _render_earn),
    Command("redeem", "pay with points", _with_ledger(_redeem), _redeem_args, _render_redeem),
    Command(
        "refund",
        "refund a receipt or some lines",
        _with_ledger(_refund),
        _refund_args,
        _render_refund,
    ),
    Command(
        "balance",
        "a member's points, tier and expiring points",
        _with_ledger(_balance),
        _member_arg,
        _render_balance,
    ),
    Command(
        "adjust",
        "manual points correction (supervisor)",
        _with_ledger(
            lambda ledger, args: ledger.adjust(args.member, args.points, args.reason, args.staff)
        ),
        _adjust_args,
    ),
    Command(
        "qr",
        "the member's current phone code",
        _qr,
        _member_arg,
        lambda r: f"{r['payload']}\n(valid until {r['valid_until']})",
    ),
    Command("log verify", "check the journal's chain and signatures", _verify, _verify_args),
    Command(
        "log export", "write a portable copy of the journal", _with_ledger(_export), _export_args
    ),
]
