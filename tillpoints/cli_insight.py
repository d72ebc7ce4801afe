"""HQ insight commands (issue 8): ``hq simulate``, ``hq report``, ``hq campaign
add|list|model fit``, ``hq suggestion-rules`` (issue 15), and the till's ``offer take``.

Thin, like ``tillpoints.cli_sync``: parse options, call one function of
``sync.hq.insight``; errors carry their own code and exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from agent.results import OfferTaken
from sync.errors import invalid
from sync.hq.db import HQStore
from tillpoints.cli_sync import key_arg
from tillpoints.commands import Command, Context, Result


def _open(ctx: Context) -> HQStore:
    from sync.hq.stores import open_store

    if not ctx.args.db:
        raise invalid("invalid_db_url", "db: give --db sqlite:///PATH or postgresql://...")
    return open_store(ctx.args.db, getattr(ctx.args, "key", None))


def _db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("TILLPOINTS_HQ_DB"),
        help="sqlite:///PATH or postgresql://... (default $TILLPOINTS_HQ_DB)",
    )


def _positive(name: str, value: int, most: int) -> int:
    if not 1 <= value <= most:
        raise invalid(f"invalid_{name}", f"{name}: 1 to {most}")
    return value


def _simulate_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    key_arg(parser)
    parser.add_argument("--stores", type=int, required=True)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2025-01-01", help="first day (2025-01-01)")
    parser.add_argument(
        "--ledger-days",
        type=int,
        help="days written through the till ledger before the model takes over "
        "(default: all for up to 2,000 members, else 1)",
    )
    parser.add_argument("--sync-days", type=int, default=7, help="days between uploads (7)")
    parser.add_argument(
        "--workers", type=int, help="processes the stores are shared among (default: one per core)"
    )


def _simulate(ctx: Context) -> Result:
    from sync.hq.insight.simulate import simulate

    args = ctx.args
    try:
        start = dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC)
    except ValueError:
        raise invalid("invalid_date", "start: not a date YYYY-MM-DD") from None
    store = _open(ctx)
    try:
        return simulate(
            store,
            stores=_positive("stores", args.stores, 10_000),
            members=_positive("members", args.members, 10_000_000),
            days=_positive("days", args.days, 3_650),
            seed=args.seed,
            start=start,
            ledger_days=args.ledger_days,
            sync_days=_positive("sync_days", args.sync_days, 365),
            workers=None if args.workers is None else _positive("workers", args.workers, 256),
            progress=lambda line: print(line, file=sys.stderr),
        )
    finally:
        store.close()


def _report_args(parser: argparse.ArgumentParser) -> None:
    from sync.hq.insight.catalog import FORMATS, REPORTS

    parser.add_argument("name", metavar="NAME", help=", ".join(REPORTS))
    _db_arg(parser)
    parser.add_argument("--from", dest="start", help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", help="last day, YYYY-MM-DD (default: newest data)")
    parser.add_argument("--store", help="one store only")
    parser.add_argument("--format", default="json", choices=FORMATS)
    parser.add_argument("--out", type=Path, help="write the report to this file")
    parser.add_argument(
        "--campaign", help="campaign_response, campaign_model: one campaign (name or id)"
    )


def _report(ctx: Context) -> Result:
    from sync.hq.insight.catalog import render, run_report

    args = ctx.args
    store = _open(ctx)
    try:
        report = run_report(store, args.name, args.start, args.end, args.store, args.campaign)
    finally:
        store.close()
    if args.out is not None:
        args.out.write_text(render(report, args.format), "utf-8")
        report["out"] = str(args.out)
    elif not ctx.json and args.format != "json":
        sys.stdout.write(render(report, args.format))
        report["printed"] = True
    return report


def _render_report(result: Result) -> str:
    from sync.hq.insight.catalog import render

    if result.get("printed"):
        return ""
    if "out" in result:
        return f"{result['report']}: {len(result['rows'])} rows written to {result['out']}"
    return render(result, "json").rstrip("\n")


def _campaign_args(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="campaign_action", metavar="ACTION", parser_class=type(parser)
    )
    actions.required = True
    add = actions.add_parser("add", help="define a campaign and assign its members")
    list_ = actions.add_parser("list", help="the campaigns, with offers taken so far")
    model = actions.add_parser("model", help="the response model: fit")
    model_actions = model.add_subparsers(
        dest="model_action", metavar="ACTION", parser_class=type(parser)
    )
    model_actions.required = True
    fit = model_actions.add_parser(
        "fit", help="fit the response model on the campaigns with takes and store it"
    )
    fit.add_argument("--campaign", help="fit on this campaign alone (name or id)")
    for sub in (add, list_, fit):
        _db_arg(sub)
    add.add_argument("--file", type=Path, help="a TOML file with the keys below")
    add.add_argument("--name")
    add.add_argument(
        "--target",
        help="segment:NAME | store:S | members:FILE | model:TOPN | model:CAMPAIGN:TOPN "
        "(the TOPN members the response model scores highest)",
    )
    add.add_argument("--offer", help="multiplier:M | voucher:AMOUNT | gift:TEXT")
    add.add_argument("--from", dest="start", help="first day, YYYY-MM-DD")
    add.add_argument("--to", dest="end", help="last day, YYYY-MM-DD")
    add.add_argument("--holdout", help="share held out to measure the response, 0..0.9 (0)")
    add.add_argument("--seed", type=int, help="hold-out draw seed (default: from the name)")
    add.add_argument("--title", help="what the counter shows (default: from the offer)")
    add.add_argument(
        "--chain-wide",
        action="store_true",
        default=None,
        help="send the offers to every till (at most 5,000 offered members)",
    )


def _campaign(ctx: Context) -> Result:
    from sync.hq.insight import campaigns

    args = ctx.args
    if args.campaign_action in ("list", "model"):
        store = _open(ctx)
        try:
            if args.campaign_action == "list":
                return campaigns.list_campaigns(store)
            from sync.hq.insight.stored_model import fit_command

            return fit_command(store, args.campaign, dt.datetime.now(dt.UTC))
        finally:
            store.close()
    values: dict[str, object] = {}
    base = None
    if args.file is not None:
        values = campaigns.load_file(args.file)
        base = args.file.resolve().parent
    given = {
        "name": args.name,
        "target": args.target,
        "offer": args.offer,
        "from": args.start,
        "to": args.end,
        "holdout": args.holdout,
        "seed": args.seed,
        "title": args.title,
        "chain_wide": args.chain_wide,
    }
    values.update({key: value for key, value in given.items() if value is not None})
    if args.target is not None:
        base = None  # a members:FILE on the command line is relative to where we are
    spec = campaigns.parse_spec(values, base)
    store = _open(ctx)
    try:
        return campaigns.add_campaign(store, spec, dt.datetime.now(dt.UTC))
    finally:
        store.close()


def _suggestion_rules_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument("--set", dest="file", type=Path, help="a JSON file of rules to set")


def _suggestion_rules(ctx: Context) -> Result:
    from sync.hq.insight.suggestions import read_rules_file, rules_command
    from sync.hq.scrub import cli_operator
    from tillpoints.cli_privacy import who_runs

    if ctx.args.file is not None:
        read_rules_file(ctx.args.file)  # checked before the database opens
    now = dt.datetime.now(dt.UTC)
    store = _open(ctx)
    try:
        return rules_command(store, ctx.args.file, cli_operator(who_runs(), now), now)
    finally:
        store.close()


def _offer_take_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--member", required=True, help="member id, card number or QR payload")
    parser.add_argument("--offer", required=True, help="the offer id shown with the member")
    parser.add_argument("--receipt", required=True)
    parser.add_argument("--staff")


def _offer_take(ctx: Context) -> OfferTaken:
    from tillpoints.cli_ledger import open_ledger

    args = ctx.args
    ledger = open_ledger(ctx)
    try:
        return ledger.take_offer(args.member, args.offer, args.receipt, args.staff)
    finally:
        ledger.close()


COMMANDS = [
    Command(
        "hq simulate",
        "simulate a chain's history through the till and upload code",
        _simulate,
        _simulate_args,
    ),
    Command(
        "hq report",
        "member insight reports (liability, segments, sales, ...)",
        _report,
        _report_args,
        render=_render_report,
    ),
    Command("hq campaign", "targeted offers: add, list; model fit", _campaign, _campaign_args),
    Command(
        "hq suggestion-rules",
        "HQ's suggestion rules for the counter: show, or --set FILE",
        _suggestion_rules,
        _suggestion_rules_args,
    ),
    Command("offer take", "take an HQ offer at the counter", _offer_take, _offer_take_args),
]
