"""``python -m ui [--config FILE] [--socket PATH]``: the cashier app, until the
``tillpoints ui`` command is registered (and for tests that drive it in tmux)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.config import load_config
from ui.app import run_ui


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ui", description="the cashier UI")
    parser.add_argument("--config", help="agent configuration (default $TILLPOINTS_CONFIG)")
    parser.add_argument("--socket", help="the agent's socket (default: from the configuration)")
    args = parser.parse_args()
    socket = args.socket
    if socket is None:
        config = args.config or os.environ.get("TILLPOINTS_CONFIG", "/etc/tillpoints/agent.toml")
        socket = load_config(Path(config)).socket
    run_ui(socket)


if __name__ == "__main__":
    main()
