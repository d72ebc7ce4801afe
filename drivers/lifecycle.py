"""A reader's lifecycle, written down as a table (in the manner of h11's ``_state``).

    absent --open--> open --grab--> grabbed
    open/grabbed --lose--> lost --open--> open
    grabbed --release--> open
    any --close--> closed

An event that the table does not allow from the current state is a bug in the
reader shell, and raises ``DriverError("illegal_transition")`` instead of silently
leaving the reader in a state nobody planned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from drivers.errors import DriverError


class ReaderState(Enum):
    ABSENT = "absent"
    OPEN = "open"
    GRABBED = "grabbed"
    LOST = "lost"
    CLOSED = "closed"


_S = ReaderState
TRANSITIONS: Mapping[tuple[ReaderState, str], ReaderState] = MappingProxyType(
    {
        (_S.ABSENT, "open"): _S.OPEN,
        (_S.ABSENT, "close"): _S.CLOSED,
        (_S.OPEN, "grab"): _S.GRABBED,
        (_S.OPEN, "lose"): _S.LOST,
        (_S.OPEN, "close"): _S.CLOSED,
        (_S.GRABBED, "release"): _S.OPEN,
        (_S.GRABBED, "lose"): _S.LOST,
        (_S.GRABBED, "close"): _S.CLOSED,
        (_S.LOST, "open"): _S.OPEN,
        (_S.LOST, "close"): _S.CLOSED,
    }
)
CONNECTED = frozenset({_S.OPEN, _S.GRABBED})


class Lifecycle:
    """The current state of one reader; ``fire`` applies an event from the table."""

    def __init__(self, on_change: Callable[[ReaderState], None] | None = None) -> None:
        self._state = ReaderState.ABSENT
        self._on_change = on_change
        self._lock = threading.Lock()

    @property
    def state(self) -> ReaderState:
        return self._state

    def fire(self, event: str) -> ReaderState:
        with self._lock:
            target = TRANSITIONS.get((self._state, event))
            if target is None:
                raise DriverError(
                    "illegal_transition", f"a reader cannot {event} when {self._state.value}"
                )
            self._state = target
        if self._on_change is not None:
            self._on_change(target)
        return target


@dataclass(frozen=True)
class ReaderHealth:
    """What the daemon reports for a reader (``GET /v1/status``). ``last_scan_at`` is
    unix time; ``errors`` counts lost connections, dropped input and restarts;
    ``unreadable`` counts the ``unreadable`` scans among ``scans`` (many of them: a
    dirty head, or a reader at the wrong baud rate sending noise)."""

    kind: str
    path: str
    state: ReaderState
    last_scan_at: float | None
    scans: int
    errors: int
    unreadable: int = 0

    @property
    def connected(self) -> bool:
        return self.state in CONNECTED

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "state": self.state.value,
            "connected": self.connected,
            "last_scan_at": self.last_scan_at,
            "scans": self.scans,
            "errors": self.errors,
            "unreadable": self.unreadable,
        }
