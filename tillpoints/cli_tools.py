"""Commands for people at the till and for newcomers: the cashier UI, the demo
store, and the performance figures.

`ui` and `demo` import Textual only when they run: the agent, the drivers and
sync never load it (the agent's memory budget depends on that)."""

from __future__ import annotations

import argparse

from agent.config import load_config
from agent.errors import InvalidInput
from sync.errors import invalid
from tillpoints import bench, flush_delay
from tillpoints.commands import Command, Context, Result

MOST_TILLS = 100_000


def _bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", help="run only groups whose name has this")
    parser.add_argument(
        "--tills", default="1000", help="tills in the chain whose night is uploaded (1000)"
    )
    parser.add_argument(
        "--members", type=int, default=1_000_000, help="hq_scale: members (default 1,000,000)"
    )
    parser.add_argument(
        "--entries", type=int, default=20_000_000, help="hq_scale: entries (default 20,000,000)"
    )
    parser.add_argument(
        "--flush-delay-ms",
        help="add this many ms to every fsync, as a till's slower disk flushes",
    )


def _tills(text: str) -> int:
    """``--tills``: a whole number of tills, 1 to ``MOST_TILLS``."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MOST_TILLS:
        raise invalid("invalid_tills", f"tills: a whole number from 1 to {MOST_TILLS}")
    return int(text)


def _bench(ctx: Context) -> Result:
    if ctx.args.members < 1 or ctx.args.entries < ctx.args.members:
        raise InvalidInput("invalid_usage", "members: at least 1, and entries at least members")
    arguments = {
        "only": ctx.args.only,
        "tills": _tills(ctx.args.tills),
        "members": ctx.args.members,
        "entries": ctx.args.entries,
    }
    if ctx.args.flush_delay_ms is not None:
        return flush_delay.run(flush_delay.delay_us(ctx.args.flush_delay_ms), arguments)
    return bench.run(**arguments)


def _ui(ctx: Context) -> Result:
    from ui.app import run_ui

    config = load_config(ctx.config_path)
    # F9's `tillpoints sync` must find the same till.
    sync_args = ("--state", str(ctx.state_dir), "--config", str(ctx.config_path))
    run_ui(config.socket, sync_args=sync_args)
    return {"stopped": True}


def _demo(ctx: Context) -> Result:
    from tillpoints.demo import run_demo

    run_demo()
    return {"stopped": True}


COMMANDS = [
    Command("ui", "the cashier's screen, against the local agent", _ui, quiet=True),
    Command(
        "demo",
        "a whole simulated store: HQ, agent, a reader on a pty, the cashier UI",
        _demo,
        quiet=True,
    ),
    Command("bench", "print the performance figures", _bench, _bench_args, bench.render),
]
