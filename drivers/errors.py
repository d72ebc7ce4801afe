"""The project's exception root and the drivers' own (docs/contract.md, docs/style.md).

``TillpointsError`` is the one root every expected failure of ours derives from:
a stable snake_case ``code``, a ``message`` that names what is wrong, an
``exit_status`` for the command line and an ``http_status`` for an API. The
command line (``tillpoints.cli``), the agent's local API (``agent.api``) and HQ's
service (``sync.hq.http``) each map it once. It lives here, on the lowest floor,
because every floor may import ``drivers`` and ``drivers`` imports nothing of ours.

Each package has its own root below it (docs/architecture.md, "Floors"):

- ``drivers.errors.DriverError``: readers and decoders;
- ``agent.errors.LedgerError``: the till (with ``InvalidInput``, ``Refused``,
  ``VerificationFailed``);
- ``sync.errors.SyncError``: the protocol, the till's uploader and HQ.
"""

from __future__ import annotations

from typing import Any


class TillpointsError(Exception):
    """An expected failure with a stable ``code`` (exit 1 and HTTP 500 unless a
    subclass or the instance says otherwise)."""

    exit_status = 1
    http_status = 500

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Extra keys for the JSON answer (``log verify`` adds ok, first_bad_seq, reason).
        self.details = details or {}

    def as_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class DriverError(TillpointsError):
    """A reader or decoder failure. ``exit_status`` follows docs/contract.md: 2 for input
    that is wrong (an unknown device, a bad capture file), 1 for I/O failures; the
    local API answers 400 for the first, 500 for the second."""

    def __init__(self, code: str, message: str, exit_status: int = 1) -> None:
        super().__init__(code, message)
        self.exit_status = exit_status
        self.http_status = 400 if exit_status == 2 else 500
