"""Sync and HQ commands of docs/contract.md: register, sync, and ``hq ...``.

Thin: each command parses its options and calls one function of ``sync``; the
errors those raise (``sync.errors.SyncError``, a ``TillpointsError``) carry their
own code and exit status, which ``tillpoints.cli`` maps in its one place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync.errors import invalid, unverified
from sync.hq.db import HQStore
from tillpoints.commands import Command, Context, Result


def _db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("TILLPOINTS_HQ_DB"),
        help="sqlite:///PATH or postgresql://... (default $TILLPOINTS_HQ_DB)",
    )


def key_arg(parser: argparse.ArgumentParser) -> None:
    """``--key FILE``: HQ's signing key (sync.hq.keyfile); $TILLPOINTS_HQ_KEY, else
    beside an SQLite database, else in HQ's state directory."""
    parser.add_argument(
        "--key",
        type=Path,
        help="HQ's signing key file, 0600 (default $TILLPOINTS_HQ_KEY, else NAME-signing.key "
        "beside an SQLite database NAME.db, else $TILLPOINTS_HQ_STATE/hq-ID.key)",
    )


def _init_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    key_arg(parser)


def _hq_init_args(parser: argparse.ArgumentParser) -> None:
    _init_args(parser)
    parser.add_argument(
        "--qr-secret-file",
        help="the chain's existing QR secret (what agent.toml's qr_secret was), kept 0600 "
        "beside HQ's key; without it HQ derives one from its key",
    )


def _with_store(
    action: Callable[[HQStore, argparse.Namespace], Result],
) -> Callable[[Context], Result]:
    def run(ctx: Context) -> Result:
        from sync.hq.stores import open_store

        if not ctx.args.db:
            raise invalid("invalid_db_url", "db: give --db sqlite:///PATH or postgresql://...")
        store = open_store(ctx.args.db, getattr(ctx.args, "key", None))
        try:
            return action(store, ctx.args)
        finally:
            store.close()

    return run


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- till side ------------------------------------------------------------------------


def _register_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hq", required=True, help="HQ's URL (https://...)")
    parser.add_argument("--token", required=True, help="the one-time token from `hq add-device`")
    parser.add_argument("--ca", type=Path, help="CA bundle to verify HQ's certificate")


def _register(ctx: Context) -> Result:
    from sync.till_register import register_till

    return register_till(ctx.state_dir, ctx.args.hq, ctx.args.token, ctx.args.ca)


def _sync_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hq", help="HQ's URL (default: the one registered with)")
    parser.add_argument("--ca", type=Path, help="CA bundle to verify HQ's certificate")


def _progress(line: str) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    sys.stderr.write(line + end)
    sys.stderr.flush()


def _sync(ctx: Context) -> Result:
    from sync.till_sync import sync_till

    result = sync_till(ctx.state_dir, ctx.args.hq, ctx.args.ca, progress=_progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return result


# -- HQ side --------------------------------------------------------------------------


def _hq_init(store: HQStore, args: argparse.Namespace) -> Result:
    from agent.keys import device_id_for
    from sync.hq.devices import init_hq
    from sync.hq.keyfile import key_path, load_key

    public = init_hq(store)
    signing = load_key(store)
    key = key_path(store, device_id_for(signing.public_key()))
    result = {"db": args.db, "hq_public_key": public, "key": str(key)}
    if args.qr_secret_file:
        from sync.hq.keyfile import keep_qr_secret

        result["qr_secret"] = str(keep_qr_secret(store, signing, Path(args.qr_secret_file)))
    return result


def _add_device_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument("--store", required=True)
    parser.add_argument("--till", required=True)
    parser.add_argument("--ttl-hours", type=float, default=24.0, help="token lifetime (24)")


def _add_device(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.devices import add_device

    if not 0 < args.ttl_hours <= 24 * 30:
        raise invalid("invalid_ttl", "ttl-hours: more than 0, at most 720")
    ttl = dt.timedelta(hours=args.ttl_hours)
    return add_device(store, args.store, args.till, _now(), ttl)


def _serve_args(parser: argparse.ArgumentParser) -> None:
    _init_args(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")


def _serve(ctx: Context) -> Result:
    from sync.hq.server import ServeOptions, serve

    args = ctx.args
    if not args.db:
        raise invalid("invalid_db_url", "db: give --db sqlite:///PATH or postgresql://...")
    serve(
        ServeOptions(
            db_url=args.db,
            key=args.key,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            workers=max(1, args.workers),
            threads=max(1, args.threads),
        )
    )
    return {}


def _balance_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument("--member", required=True, help="member id or card number")


def _balance(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.projection import balance

    return balance(store, args.member)


def _verify(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.audit import verify_all

    result: dict[str, Any] = verify_all(store)
    if not result["ok"]:
        first = result["problems"][0]
        raise unverified(
            "chain_broken",
            f"device {first['device']}: entry {first['first_bad_seq']}: {first['reason']}",
            **result,
        )
    return result


def _alerts(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.projection import alerts

    return {"alerts": alerts(store)}


def _limits_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument(
        "--adjust-points", help="largest plausible manual adjustment, in points (100000)"
    )
    parser.add_argument(
        "--entry-points", help="most points any other single entry may add (1000000)"
    )
    parser.add_argument(
        "--earn-rate", help="most points per 1.00 of sale (default: the rules' best rate)"
    )


def _limits(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.plausible import limits, set_limits

    given = {
        "limit_adjust_points": args.adjust_points,
        "limit_entry_points": args.entry_points,
        "limit_earn_points_per_unit": args.earn_rate,
    }
    with store.write() as tx:
        set_limits(tx, {key: value for key, value in given.items() if value is not None})
        return limits(tx).to_json()


def _unfreeze_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument("--device", required=True, help="the frozen device id")


def _unfreeze(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.devices import unfreeze

    return unfreeze(store, args.device)


def _operator_token_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument("--name", default="operator", help="who the token is for (operator)")
    parser.add_argument("--ttl-days", type=float, default=30.0, help="token lifetime (30)")
    parser.add_argument(
        "--login-link",
        action="store_true",
        help="also print a one-time browser login path, valid 60 s",
    )
    parser.add_argument(
        "--role",
        choices=("viewer", "marketer", "admin"),
        default="viewer",
        help="viewer reads; marketer also adds campaigns; admin may do everything (viewer)",
    )
    parser.add_argument(
        "--revoke", metavar="NAME", help="end every token, link and session of NAME instead"
    )


def _operator_token(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.insight.operators import MAX_TTL_DAYS, issue, revoke

    if args.revoke is not None:
        return revoke(store, args.revoke, _now())
    if not 0 < args.ttl_days <= MAX_TTL_DAYS:
        raise invalid("invalid_ttl", f"ttl-days: more than 0, at most {MAX_TTL_DAYS}")
    ttl = dt.timedelta(days=args.ttl_days)
    return issue(store, args.name, _now(), ttl, login_link=args.login_link, role=args.role)


def _devices_args(parser: argparse.ArgumentParser) -> None:
    _db_arg(parser)
    parser.add_argument(
        "--stale-hours",
        type=int,
        help="set when a till that has not synced stands out (24), for the console too",
    )


def _devices(store: HQStore, args: argparse.Namespace) -> Result:
    from sync.hq.console.fleet import devices, set_stale_hours

    if args.stale_hours is not None:
        set_stale_hours(store, args.stale_hours)
    return devices(store, _now())


COMMANDS = [
    Command("register", "register this till with HQ (one-time token)", _register, _register_args),
    Command("sync", "upload the journal to HQ and download updates", _sync, _sync_args),
    Command(
        "hq init",
        "create HQ's database schema and signing key file",
        _with_store(_hq_init),
        _hq_init_args,
    ),
    Command(
        "hq add-device",
        "issue a one-time registration token for a store's till",
        _with_store(_add_device),
        _add_device_args,
    ),
    Command("hq serve", "serve the HQ sync API", _serve, _serve_args, quiet=True),
    Command(
        "hq balance", "a member's balance across all stores", _with_store(_balance), _balance_args
    ),
    Command("hq verify", "re-check every stored chain", _with_store(_verify), _db_arg),
    Command(
        "hq alerts",
        "forks, tampering, negative balances, duplicates, skew",
        _with_store(_alerts),
        _db_arg,
    ),
    Command(
        "hq devices",
        "every till: store, last sync, acknowledged seq, skew, frozen, stale",
        _with_store(_devices),
        _devices_args,
    ),
    Command(
        "hq unfreeze", "let a frozen device upload again", _with_store(_unfreeze), _unfreeze_args
    ),
    Command(
        "hq limits",
        "show (or set) the plausibility limits of uploaded entries",
        _with_store(_limits),
        _limits_args,
    ),
    Command(
        "hq operator-token",
        "issue (or --revoke) a token for the reports and the console, with a role",
        _with_store(_operator_token),
        _operator_token_args,
    ),
]
