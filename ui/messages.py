"""Messages that go up: from workers (the event stream, requests, sync) to the
screens and the app. Widgets are never touched from a worker's thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


class ScanArrived(Message):
    """A card was scanned (``event: scan``, data as the agent sent it)."""

    def __init__(self, scan: dict[str, Any]) -> None:
        super().__init__()
        self.scan = scan


class ReaderChanged(Message):
    """A reader was connected or lost (``event: reader``)."""

    def __init__(self, path: str, state: str) -> None:
        super().__init__()
        self.path, self.state = path, state


class StatusArrived(Message):
    """The agent's ``/v1/status`` (also the ``hello`` event of every stream)."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__()
        self.status = status


class LinkChanged(Message):
    """The event stream to the agent went up or down."""

    def __init__(self, connected: bool, reason: str = "") -> None:
        super().__init__()
        self.connected, self.reason = connected, reason


class MemberLoaded(Message):
    """A member fetched again after an operation or a lookup (``/v1/members/REF``)."""

    def __init__(self, member: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.member, self.error = member, error


class Answered(Message):
    """The agent's answer to a form's request: a result, or an error code and text."""

    def __init__(
        self, result: Any = None, code: str = "", message: str = "", body: Any = None
    ) -> None:
        super().__init__()
        self.result, self.code, self.message, self.body = result, code, message, body

    @property
    def failed(self) -> bool:
        return bool(self.code)


class StoreListLoaded(Message):
    """The store's list (``GET /v1/suggestions``), or the agent's error; ``said`` is
    what the advisor is told with it (the answer just recorded)."""

    def __init__(self, listed: dict[str, Any] | None, error: str = "", said: str = "") -> None:
        super().__init__()
        self.listed, self.error, self.said = listed, error, said


class SuggestionAnswered(Message):
    """The agent's answer to ``POST /v1/suggestions``: the answer recorded, or an
    error code and text. ``suggestion`` is the suggestion as it was shown."""

    def __init__(
        self,
        member_ref: str,
        suggestion: dict[str, Any],
        outcome: str,
        result: dict[str, Any] | None = None,
        code: str = "",
        message: str = "",
    ) -> None:
        super().__init__()
        self.member_ref, self.suggestion, self.outcome = member_ref, suggestion, outcome
        self.result, self.code, self.message = result, code, message


class StatusStale(Message):
    """Something was written: the status (journal, unsynced count) is worth asking again."""


class SyncFinished(Message):
    def __init__(self, ok: bool, text: str) -> None:
        super().__init__()
        self.ok, self.text = ok, text


@dataclass(frozen=True)
class Outcome:
    """What a finished form hands back to the counter: words for the cashier, the
    member to show again, and an e-card number to show as a QR code."""

    text: str
    member_ref: str | None = None
    ecard: str | None = None
    name: str | None = None
