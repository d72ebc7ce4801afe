"""The card-reader commands: ``decode`` (docs/contract.md) and ``readers``.

``decode`` runs a capture through the same decoder the live readers use: bytes a
serial reader sent (``--from serial``, the default) or an ``evtest`` capture of a
keyboard-wedge reader (``--from evtest``, US layout unless ``--layout``).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from agent.config import load_config
from agent.till_secrets import SECRETS_FILE, TillSecrets
from drivers.cards import DEFAULT_POLICY, CardPolicy
from drivers.decoder import DecoderSettings, decode_events, decode_stream
from drivers.layouts import LAYOUTS
from drivers.listing import list_readers
from drivers.replay import load_events, read_capture
from tillpoints.commands import Command, Context, Result


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", choices=("serial", "evtest"), default="serial")
    parser.add_argument("--file", help="the capture to decode (default: standard input)")
    parser.add_argument("--lrc", action="store_true", help="the reader sends an LRC per track")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="us")


def decode_capture(
    data: bytes,
    source: str,
    policy: CardPolicy = DEFAULT_POLICY,
    qr_secret: bytes | None = None,
    lrc: bool = False,
    layout: str = "us",
) -> list[dict[str, str]]:
    """The ``decode`` items for a capture; raises ``DriverError`` for a bad capture."""
    settings = DecoderSettings(policy=policy, qr_secret=qr_secret, lrc=lrc, layout=layout)
    if source == "evtest":
        scans = decode_events(load_events(data), replace(settings, signon_s=0.0))
    else:
        scans = decode_stream(data, settings)
    return [scan.to_json() for scan in scans]


def _decode(ctx: Context) -> Result:
    args = ctx.args
    config = load_config(ctx.config_path)
    data = read_capture(Path(args.file), "--file") if args.file else sys.stdin.buffer.read()
    scans = decode_capture(
        data, args.source, config.cards, _qr_secret(ctx.state_dir), lrc=args.lrc, layout=args.layout
    )
    return {"scans": scans}


def _qr_secret(state_dir: Path) -> bytes | None:
    """The till's QR secret if this user may read it (the agent's user): another
    user decodes dynamic codes as ``invalid_code``, like a till not registered."""
    path = state_dir / SECRETS_FILE
    if not os.access(path, os.R_OK):
        return None
    return TillSecrets(state_dir).qr()


def _render_scans(result: Result) -> str:
    lines = []
    for item in result["scans"]:
        if item["kind"] == "member":
            lines.append(f"member {item['card']} ({item['source']})")
        else:
            lines.append(f"{item['error']}: {item['message']}")
    return "\n".join(lines) or "no scans"


def _readers(ctx: Context) -> Result:
    return {"readers": list_readers()}


def _render_readers(result: Result) -> str:
    lines = [f"{item['kind']}\t{item['path']}" for item in result["readers"]]
    return "\n".join(lines) or "no readers found"


COMMANDS: list[Command] = [
    Command(
        name="decode",
        help="decode a reader capture into scans",
        run=_decode,
        arguments=_decode_arguments,
        render=_render_scans,
    ),
    Command(
        name="readers",
        help="list candidate card readers on this machine",
        run=_readers,
        render=_render_readers,
    ),
]
