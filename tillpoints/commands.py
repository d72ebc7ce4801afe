"""How a command of the ``tillpoints`` CLI is declared.

Each package that brings commands exposes a plain list of ``Command`` objects; the
CLI (``tillpoints.cli``) collects those lists explicitly. No discovery by import side
effects: reading ``tillpoints.cli.COMMAND_MODULES`` tells every command there is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.results import Answer

# What a command prints with --json. A command may return a ledger's typed answer
# (``agent.results``) instead: it becomes JSON at this edge (``as_result``).
Result = dict[str, Any]


@dataclass
class Context:
    """What every command gets: the parsed options and where the till's state lives."""

    args: argparse.Namespace
    state_dir: Path
    config_path: Path
    json: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        state = args.state or os.environ.get("TILLPOINTS_STATE") or "/var/lib/tillpoints"
        config = args.config or os.environ.get("TILLPOINTS_CONFIG") or "/etc/tillpoints/agent.toml"
        return cls(args=args, state_dir=Path(state), config_path=Path(config), json=args.json)


@dataclass(frozen=True)
class Command:
    """One CLI command. ``name`` may have two words (``"log verify"``)."""

    name: str
    help: str
    run: Callable[[Context], Result | Answer]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    # Renders the result for people; the default prints ``key: value`` lines.
    render: Callable[[Result], str] | None = None
    # Commands that stream to the terminal themselves (agent, ui, demo) print no result.
    quiet: bool = False
    epilog: str = field(default="")


def as_result(outcome: Result | Answer) -> Result:
    """A command's outcome as the JSON object it prints (and renders for people)."""
    return outcome.as_json() if isinstance(outcome, Answer) else outcome


def render_plain(result: Result) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"  - {item}" for item in value)
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
