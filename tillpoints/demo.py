"""``tillpoints demo``: a whole store on this machine, and the cashier app on it.

HQ on loopback with SQLite, a till registered with it, the real agent with a
serial reader on a pseudo-terminal (``SimulatedTill``), and the app with two demo
keys: F8 "swipes" a sample card on that reader, F9 runs the nightly sync. Every
part is the real program run as a subprocess; quitting stops each of them, by the
process id this module started, and removes the temporary directory.

HQ is optional: when one of its commands is missing or fails, the demo still runs
and shows sync as unavailable, with the reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from agent.ledger import Ledger
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill
from ui.app import CashierApp
from ui.sync_run import SyncCommand

STORE, TILL = "S001", "T01"
HQ_START_S = 20.0
CLI = (sys.executable, "-m", "tillpoints.cli")


class HQUnavailable(Exception):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DemoStore:
    """HQ, one registered till and its agent, in ``root``."""

    def __init__(self, root: Path, say: Callable[[str], None] = print) -> None:
        self.root, self.say = root, say
        (root / "till").mkdir(parents=True, exist_ok=True)
        self.till = SimulatedTill(root / "till", members=False)
        ledger = Ledger.init(self.till.state, STORE, TILL)
        try:
            # Ann gave marketing consent and has a birthday in five days: after the
            # demo's sync (F9) HQ's birthday suggestion is on the till (issue 15).
            ledger.enrol(
                name="Ann",
                phone="5551234567",
                card=DEMO_CARD,
                birthday=demo_birthday(dt.date.today()),
                consent_marketing=True,
            )
        finally:
            ledger.close()
        self.hq: subprocess.Popen[bytes] | None = None
        self.hq_log: IO[bytes] | None = None
        self.hq_url = ""
        self.sync = SyncCommand(unavailable="HQ has not started")

    @property
    def socket(self) -> str:
        return str(self.root / "till" / "run" / "agent.sock")

    def _cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [*CLI, *args, "--json"],
            env=self.till.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        except json.JSONDecodeError:
            answer = {}
        if done.returncode != 0:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise HQUnavailable(f"`tillpoints {' '.join(args[:2])}`: {message or done.stderr}")
        return answer if isinstance(answer, dict) else {}

    def start(self) -> None:
        try:
            self._start_hq()
        except HQUnavailable as why:
            self.say(f"HQ is not available ({why}); the till runs offline.")
            self.sync = SyncCommand(unavailable=str(why))
        self.say("Starting the till agent with a simulated card reader…")
        # No watchdog: nobody reads the simulated NOTIFY_SOCKET after READY, and the
        # agent's WATCHDOG=1 datagrams would fill it and block the agent.
        self.till.start(watchdog_usec=0)

    def _start_hq(self) -> None:
        db = f"sqlite:///{self.root / 'hq.db'}"
        self.say("Starting HQ (SQLite, loopback)…")
        self._cli("hq", "init", "--db", db)
        token = self._cli("hq", "add-device", "--db", db, "--store", STORE, "--till", TILL)
        port = _free_port()
        self.hq_log = (self.root / "hq.log").open("wb")
        self.hq = subprocess.Popen(
            [
                *CLI,
                "hq",
                "serve",
                "--db",
                db,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=self.till.env,
            stdout=self.hq_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers form one group, stopped together
        )
        self._wait_for_port(port)
        self.hq_url = f"http://127.0.0.1:{port}"
        self._cli("register", "--hq", self.hq_url, "--token", str(token.get("token")))
        self.sync = SyncCommand(argv=(*CLI, "sync"), env=self.till.env)
        self.say(f"HQ is serving on {self.hq_url}; the till is registered.")
        self.say(
            "Ann (card 9900 8358 4053 2866) gave marketing consent and has a birthday in "
            "five days: after F9 (sync) HQ's birthday suggestion is on the till for her."
        )

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + HQ_START_S
        while time.monotonic() < deadline:
            if self.hq is not None and self.hq.poll() is not None:
                raise HQUnavailable(f"`tillpoints hq serve` exited with {self.hq.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.1)
        raise HQUnavailable("`tillpoints hq serve` did not start listening")

    def close(self) -> None:
        self.till.close()
        if self.hq is not None:
            if self.hq.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.hq.pid, signal.SIGTERM)
                try:
                    self.hq.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.hq.pid, signal.SIGKILL)
                    self.hq.wait(5)
            self.hq = None
        if self.hq_log is not None:
            self.hq_log.close()
            self.hq_log = None


def demo_birthday(today: dt.date) -> str:
    """Ann's birthday: five days from ``today`` (28 February for a 29th), born 1990."""
    soon = today + dt.timedelta(days=5)
    day = 28 if (soon.month, soon.day) == (2, 29) else soon.day
    return f"1990-{soon.month:02d}-{day:02d}"


def demo_app(store: DemoStore, *, cursor_blink: bool = True) -> CashierApp:
    return CashierApp(store.socket, sync=store.sync, reader=store.till, cursor_blink=cursor_blink)


def run_demo(argv: Sequence[str] = ()) -> None:
    """`tillpoints demo`: start the store, run the app, stop everything on quit."""
    with tempfile.TemporaryDirectory(prefix="tillpoints-demo-") as directory:
        store = DemoStore(Path(directory))
        try:
            store.start()
            demo_app(store).run()
        finally:
            store.close()
