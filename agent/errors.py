"""The agent's exception root and the exit statuses of docs/contract.md.

Every expected failure of the till is a ``LedgerError`` carrying a stable
snake_case ``code``; it derives from the project's root, ``TillpointsError``
(``drivers.errors``), which the command line (``tillpoints.cli``) and the local
API map to exit statuses, HTTP statuses and ``{"error": CODE, "message": TEXT}``
in one place each.
"""

from __future__ import annotations

from drivers.errors import TillpointsError


class LedgerError(TillpointsError):
    """The agent's root. As such: I/O failure, a full disk, a broken state directory
    (exit 1, HTTP 500)."""


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
