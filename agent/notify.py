"""sd_notify(3) without a dependency: one datagram to ``$NOTIFY_SOCKET``.

systemd's ``Type=notify`` waits for ``READY=1``; ``WatchdogSec=`` expects
``WATCHDOG=1`` more often than ``$WATCHDOG_USEC`` (we send at half of it);
``STOPPING=1`` tells it a stop has begun. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with '@' is in the abstract namespace (a leading NUL).
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields; False when there is no systemd to tell."""
        if not self.address:
            return False
        message = "\n".join(fields).encode("utf-8")
        # Never block: a listener that stops reading must not stall the agent (a
        # full socket drops the message; systemd itself always reads).
        kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        with socket.socket(socket.AF_UNIX, kind) as sock:
            try:
                sock.sendto(message, self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")
