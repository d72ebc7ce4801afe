"""The UI's line to the agent: its event stream, read on the app's own asyncio loop.

The stream is read with h11 over ``asyncio.open_unix_connection`` rather than with
``AgentClient.events()`` in a thread: a thread blocked in ``readline`` cannot be
cancelled, and would hold the app open on exit; a coroutine is cancelled with its
worker. Requests (short, blocking) go through ``AgentClient`` in thread workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h11

from ui.sse import EventParser, ServerEvent

READ_CHUNK = 65536


class StreamEnded(Exception):
    """The agent closed the stream or answered with an error."""


async def stream_events(socket_path: str) -> AsyncIterator[ServerEvent]:
    """``GET /v1/events`` as a stream of events, until the agent stops."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    connection = h11.Connection(h11.CLIENT)
    parser = EventParser()
    try:
        request = h11.Request(
            method="GET",
            target="/v1/events",
            headers=[("host", "till"), ("accept", "text/event-stream")],
        )
        writer.write(connection.send(request) + connection.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(READ_CHUNK))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    raise StreamEnded(f"the agent answered {event.status_code}")
            elif isinstance(event, h11.Data):
                for item in parser.feed(bytes(event.data)):
                    yield item
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                raise StreamEnded("the agent closed the event stream")
    except h11.RemoteProtocolError as error:
        raise StreamEnded(f"the agent's stream broke: {error}") from None
    finally:
        writer.close()
