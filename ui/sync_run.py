"""`tillpoints sync` run as its own process for the F9 key.

The cashier UI never opens the ledger or the key, and never talks to HQ itself:
the sync command does, exactly as the nightly timer runs it, and the UI shows its
JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SYNC_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class SyncOutcome:
    ok: bool
    text: str


@dataclass(frozen=True)
class SyncCommand:
    """How to run a sync: ``argv`` (``--json`` is added), its environment, or the
    reason it cannot run here."""

    argv: tuple[str, ...] = (sys.executable, "-m", "tillpoints.cli", "sync")
    env: Mapping[str, str] | None = field(default=None, repr=False)
    unavailable: str = ""

    @classmethod
    def local(cls, extra: Sequence[str] = ()) -> SyncCommand:
        """The sync of this till: ``tillpoints [--state ..] [--config ..] sync``."""
        return cls(argv=(sys.executable, "-m", "tillpoints.cli", *extra, "sync"))

    def run(self) -> SyncOutcome:
        if self.unavailable:
            return SyncOutcome(False, f"Sync is not available: {self.unavailable}")
        try:
            done = subprocess.run(
                [*self.argv, "--json"],
                env=dict(self.env) if self.env is not None else None,
                capture_output=True,
                text=True,
                timeout=SYNC_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return SyncOutcome(False, f"Sync could not run: {error}")
        return summarise(done.returncode, done.stdout)


def summarise(status: int, stdout: str) -> SyncOutcome:
    try:
        answer = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    except json.JSONDecodeError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if status == 0:
        return SyncOutcome(
            True,
            f"Synced with HQ: {answer.get('uploaded', 0)} entries uploaded, "
            f"{answer.get('downloaded', 0)} updates downloaded.",
        )
    message = answer.get("message") or f"exit status {status}"
    return SyncOutcome(False, f"Sync failed: {message}")
