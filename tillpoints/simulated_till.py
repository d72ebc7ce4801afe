"""A whole till on this machine: state, configuration, a serial card reader on a
pseudo-terminal, and the real `tillpoints agent` as a subprocess.

Used by `tillpoints demo`, `tillpoints bench` and the tests: the reader is a real
tty that pyserial opens like any port, so a "swipe" is bytes written to the far end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import tty
from pathlib import Path

from agent.client import AgentClient
from agent.ledger import Ledger

DEMO_CARD = "9900835840532866"
CLI = (sys.executable, "-m", "tillpoints.cli")


class SimulatedTill:
    def __init__(self, root: Path, *, extra_config: str = "", members: bool = True) -> None:
        self.root = root
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        os.symlink(os.ttyname(self.slave), root / "reader")
        self.config = root / "agent.toml"
        self.config.write_text(
            f'socket = "{root}/run/agent.sock"\n{extra_config}\n'
            f'[[reader]]\nkind = "serial"\npath = "{root}/reader"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: socket.socket | None = None
        self.messages: list[str] = []
        self.client = AgentClient(f"{root}/run/agent.sock")
        if members:
            ledger = Ledger.init(self.state, "S001", "T01")
            ledger.enrol(name="Ann", phone="5551234567", card=DEMO_CARD)
            ledger.close()

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def env(self) -> dict[str, str]:
        repo = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        return {
            **os.environ,
            "TILLPOINTS_STATE": str(self.state),
            "TILLPOINTS_CONFIG": str(self.config),
            "PYTHONPATH": repo + (os.pathsep + path if path else ""),
        }

    def start(self, watchdog_usec: int = 1_000_000, timeout: float = 20.0) -> None:
        """Start the agent and wait for its READY=1 on a real NOTIFY_SOCKET."""
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.root / "notify.sock"))
        env = {
            **self.env,
            "NOTIFY_SOCKET": str(self.root / "notify.sock"),
            "WATCHDOG_USEC": str(watchdog_usec),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tillpoints.cli", "agent"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self.wait_notify("READY=1", timeout)
        except TimeoutError:
            self.close()
            raise

    def add_staff(self, staff_id: str, role: str, pin: str) -> None:
        """`tillpoints staff add` as store IT would run it, the PIN on stdin."""
        added = subprocess.run(
            [*CLI, "staff", "add", "--id", staff_id, "--role", role, "--pin-stdin", "--json"],
            input=f"{pin}\n",
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if added.returncode != 0:
            raise RuntimeError(f"staff add {staff_id}: {added.stdout}{added.stderr}")

    def swipe(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_notify(self, word: str, timeout: float = 10.0) -> str:
        if any(word in message for message in self.messages):
            return next(message for message in self.messages if word in message)
        assert self.notify is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append(message)
            if word in message:
                return message
        raise TimeoutError(f"no {word} from the agent; got {self.messages}")

    def stop(self) -> int:
        """SIGTERM, as systemd would; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def close(self) -> None:
        self.stop()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self.slave = -1
