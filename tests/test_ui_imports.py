"""The core never imports the UI (docs/style.md): `agent`, `drivers` and `sync` load
without Textual, so the agent's memory stays small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_core_packages_do_not_import_textual() -> None:
    code = (
        "import tillpoints.cli, agent.daemon, drivers.registry, agent.chain; import sys; "
        "assert 'textual' not in sys.modules, sorted(m for m in sys.modules if 'textual' in m)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_the_cli_parser_does_not_import_textual() -> None:
    code = (
        "import tillpoints.cli, sys; tillpoints.cli.build_parser(tillpoints.cli._commands()); "
        "assert 'textual' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
