"""`python -m ui` (what `tillpoints ui` runs) in a real terminal: tmux at 80x24,
a swipe written to the agent's pty reader, the member's name on the screen."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.test_ui_support import MEMBER_SWIPE, till_fixture  # noqa: F401  (`till`)
from tillpoints.simulated_till import SimulatedTill

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed: `apt-get install tmux`"
)


def _screen(session: str) -> str:
    done = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    )
    return done.stdout


def _wait_screen(session: str, words: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(session)
        if words in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{words!r} never appeared; the screen was:\n{_screen(session)}")


def test_ui_in_tmux_shows_the_swiped_member(till: SimulatedTill) -> None:
    session = f"tillpoints-ui-{uuid.uuid4().hex[:8]}"
    env = till.env
    command = " ".join(
        [
            f"PYTHONPATH={shlex.quote(env['PYTHONPATH'])}",
            f"TILLPOINTS_CONFIG={shlex.quote(env['TILLPOINTS_CONFIG'])}",
            f"TILLPOINTS_STATE={shlex.quote(env['TILLPOINTS_STATE'])}",
            shlex.quote(sys.executable),
            "-m",
            "ui",
        ]
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True
    )
    try:
        screen = _wait_screen(session, "card reader ready")
        assert "Swipe or scan a member card" in screen
        till.swipe(MEMBER_SWIPE)
        screen = _wait_screen(session, "Ann")
        assert "Balance   100 points, worth 1.00" in screen
        assert "f2 Earn" in screen.replace("F2", "f2")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(
                ["tmux", "has-session", "-t", session], capture_output=True, check=False
            )
            if alive.returncode != 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("Ctrl+Q did not quit the app")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
