"""The sync package's exception root: one stable code per failure (docs/contract.md).

``SyncError`` is the root of ``sync`` (the protocol, the till's uploader, HQ and
insight). It subclasses the project's root, ``drivers.errors.TillpointsError``
(not the agent's ``LedgerError``: a sync failure is not the ledger's), so that the
command line maps it to an exit status and ``{"error": CODE, "message": TEXT}`` in
its one place, and the HQ service maps it to an HTTP status the same way. Each
error carries both: ``exit_status`` for the till's CLI and ``http_status`` for HQ.
"""

from __future__ import annotations

from typing import Any

from drivers.errors import TillpointsError


class SyncError(TillpointsError):
    """A sync or HQ failure with a stable snake_case ``code``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        exit_status: int = 1,
        http_status: int = 500,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, details)
        # Instance attributes shadow TillpointsError's class-level defaults.
        self.exit_status = exit_status
        self.http_status = http_status


def invalid(code: str, message: str, **details: Any) -> SyncError:
    """Malformed input (exit 2, HTTP 400)."""
    return SyncError(code, message, exit_status=2, http_status=400, details=details)


def refused(code: str, message: str, *, http_status: int = 409, **details: Any) -> SyncError:
    """Well-formed but refused by a rule (exit 3, HTTP 409/403/410)."""
    return SyncError(code, message, exit_status=3, http_status=http_status, details=details)


def unverified(code: str, message: str, *, http_status: int = 422, **details: Any) -> SyncError:
    """A signature, hash or chain that does not verify (exit 4, HTTP 422/401)."""
    return SyncError(code, message, exit_status=4, http_status=http_status, details=details)


def unreachable(message: str) -> SyncError:
    """HQ cannot be reached; nothing was lost, the next run resumes (exit 1)."""
    return SyncError("hq_unreachable", message, exit_status=1, http_status=503)
