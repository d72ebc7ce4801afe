"""Pushed events for the local API's ``GET /v1/events`` (Server-Sent Events).

Every subscriber gets its own bounded queue; a client that stops reading is cut
off rather than allowed to grow the agent's memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

QUEUE_LIMIT = 256
KEEPALIVE_S = 15.0


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        chunk = f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(chunk)
            except asyncio.QueueFull:
                self._cut(queue)

    def close(self) -> None:
        for queue in list(self._subscribers):
            self._cut(queue)

    def _cut(self, queue: asyncio.Queue[bytes | None]) -> None:
        """End one client's stream: drop what it has not read, then the end marker."""
        self._subscribers.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def stream(self, hello: dict[str, Any]) -> AsyncIterator[bytes]:
        """One client's events, starting with a ``hello`` (the agent's status), with
        a comment line as keep-alive when nothing happens."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            yield f"event: hello\ndata: {json.dumps(hello)}\n\n".encode()
            while True:
                try:
                    chunk = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if chunk is None:
                    return
                yield chunk
        finally:
            self._subscribers.discard(queue)
