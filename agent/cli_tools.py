"""Commands for people who run and measure the till: bench (and, later, demo)."""

from __future__ import annotations

import argparse

from agent import bench, walkthrough
from agent.commands import Command, Context, Result


def _bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", help="run only groups whose name has this")


def _bench(ctx: Context) -> Result:
    return bench.run(ctx.args.only)


def _demo(ctx: Context) -> Result:
    return walkthrough.run(say=(lambda text: None) if ctx.json else print)


COMMANDS = [
    Command("demo", "a simulated store's day", _demo, quiet=True),
    Command("bench", "print the performance figures", _bench, _bench_args, bench.render),
]
