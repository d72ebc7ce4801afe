"""Server-Sent Events framing (WHATWG HTML, "Server-sent events": the
``text/event-stream`` format), sans-I/O: bytes in, events out.

The agent sends one JSON object per event (``event: scan``, ``event: reader``,
``event: hello``) and a comment line as keep-alive; anything else is ignored
rather than allowed to stop the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: dict[str, Any]


class EventParser:
    def __init__(self) -> None:
        self._buffer = b""
        self._event = "message"
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        self._buffer += chunk
        events: list[ServerEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return events
            raw, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)

    def _dispatch(self) -> ServerEvent | None:
        event, data = self._event, "\n".join(self._data)
        self._event, self._data = "message", []
        if not data:
            return None
        try:
            value = json.loads(data)
        except json.JSONDecodeError:
            return None
        return ServerEvent(event, value) if isinstance(value, dict) else None
