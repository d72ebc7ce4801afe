"""The agent's exception root and the exit statuses of docs/contract.md.

Every expected failure is a ``LedgerError`` carrying a stable snake_case ``code``.
The command line (``tillpoints.cli``) and the local API map them to exit statuses,
HTTP statuses and ``{"error": CODE, "message": TEXT}`` in one place each.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Anything else: I/O failure, a full disk, a broken state directory (exit 1)."""

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


class InvalidInput(LedgerError):
    """The input itself is wrong; the message names the field (exit 2)."""

    exit_status = 2
    http_status = 400


class Refused(LedgerError):
    """A rule refuses an otherwise well-formed request (exit 3)."""

    exit_status = 3
    http_status = 409


class TillRestored(Refused):
    """Writes refused because ``sync`` found this till restored from a backup or
    cloned (exit 3; the local API answers 503: this till can never record again)."""

    http_status = 503


class VerificationFailed(LedgerError):
    """A log or signature does not verify (exit 4)."""

    exit_status = 4
    http_status = 422
