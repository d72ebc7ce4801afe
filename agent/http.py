"""A small HTTP/1.1 server for the agent's Unix socket, built on h11.

h11 is a sans-I/O HTTP/1.1 state machine: it turns bytes into events and events
into bytes, and refuses what RFC 9112 forbids. This module is the thin asyncio
shell around it: read, feed, dispatch, write. Keep-alive, request size limits and
streamed responses (Server-Sent Events) are handled here so that the routes in
``agent.api`` only see ``Request`` in and ``Response`` out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

MAX_BODY = 256 * 1024
READ_CHUNK = 65536
IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: Any = None
    # A streamed response (Server-Sent Events): chunks are sent as they come.
    stream: AsyncIterator[bytes] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": code, "message": message})


# -- the one request a POS sends, read without h11 (issue 18) -------------------------
#
# A POS posts each earn as one request on a kept-alive connection: ``POST /v1/earn``,
# a few plain headers, a JSON body of its Content-Length, arriving in one piece.
# ``fixed_request`` reads exactly that shape and nothing else; anything it does not
# recognise (another route, chunked or pipelined bodies, an ``Expect``, odd header
# bytes, a partial arrival) goes to h11 untouched, so it never decides what h11
# would refuse. ``tests/test_http_fixed.py`` holds it to h11: every request it reads
# h11 reads the same, and its answers are h11's bytes.

_FIXED_LINE = b"POST /v1/earn HTTP/1.1\r\n"
_FIXED_HEAD_MAX = 8 * 1024
# A header line: a token, a colon, a value of visible ASCII with inner spaces.
_FIXED_HEADER = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?[ \t]*"
)
_FIXED_NAMES = frozenset(
    (b"host", b"content-type", b"content-length", b"user-agent", b"accept", b"connection")
)


def fixed_request(data: bytes) -> Request | None:
    """``data`` read as one whole ``POST /v1/earn`` with a Content-Length and nothing
    after it, as h11 reads it; ``None``: leave it to h11."""
    if not data.startswith(_FIXED_LINE):
        return None
    end = data.find(b"\r\n\r\n", len(_FIXED_LINE) - 2)
    if end < 0 or end > _FIXED_HEAD_MAX:
        return None
    host = length = None
    for line in data[len(_FIXED_LINE) : end].split(b"\r\n"):
        header = _FIXED_HEADER.fullmatch(line)
        if header is None:
            return None
        name, value = header[1].lower(), header[2] or b""
        if name not in _FIXED_NAMES:
            return None
        if name == b"host":
            if host is not None:
                return None
            host = value
        elif name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 7:
                return None
            length = int(value)
        elif name == b"connection" and value.lower() != b"keep-alive":
            return None
    start = end + 4
    if host is None or length is None or length > MAX_BODY or len(data) != start + length:
        return None
    return Request(method="POST", path="/v1/earn", query={}, body=data[start:])


def fixed_answer(response: Response) -> bytes:
    """The bytes h11 sends for ``response`` (not streamed) to a kept-alive request."""
    payload = _payload(response)
    head = [b"HTTP/1.1 %d \r\n" % response.status]
    for name, value in _answer_headers(response, payload):
        head.append(b"%s: %s\r\n" % (name.encode("ascii"), value.encode("ascii")))
    head.append(b"\r\n")
    return b"".join((*head, payload))


@dataclass(frozen=True)
class FixedRoute:
    """Where the fixed request is answered (issue 18): ``route`` runs on ``executor``,
    the thread the ledger runs on, and its answer is written to the socket from
    there; the loop goes back to reading. The request crosses threads once: no hop
    back to the loop to write the answer (each wake-up of a thread costs 35-160 µs
    on a busy 2-core till)."""

    executor: Executor
    route: Callable[[Request], Response]


def answer_there(fd: int, route: Callable[[Request], Response], request: Request) -> bytes:
    """On the route's thread: the answer, written to the socket ``fd`` as far as the
    client's buffer takes it at once; the rest is returned for the loop to write.
    The ledger's thread never waits on a client: one that sends earns and reads
    none of their answers fills its buffer, and would otherwise hold every
    writer of the till (the cashier's screen, the other POS) while it sleeps."""
    data = fixed_answer(route(request))
    try:
        written = os.write(fd, data)  # the socket is non-blocking (the loop's)
    except BlockingIOError:
        written = 0
    return data[written:]


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    fixed: FixedRoute | None = None,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    # An answer being written from the fixed route's thread: nothing else is read,
    # written or closed on this connection before it is out.
    there: Future[bytes] | None = None
    # That thread writes to a descriptor of its own (a dup of the socket's): should the
    # loop close the connection's descriptor meanwhile (the client reset it), its
    # number may go to the next connection; the dup still names this socket only.
    out: int | None = None
    try:
        while True:
            if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                # Between requests, nothing buffered: the POS's earn may be read whole.
                data = await _read_some(reader)
                if there is not None:
                    await _written(there, writer)
                    there = None
                if not data:
                    return
                whole = fixed_request(data)
                # Written from another thread only when nothing of an earlier answer
                # waits in the loop's buffer (a client that did not read it yet).
                if (
                    whole is not None
                    and fixed is not None
                    and not writer.transport.get_write_buffer_size()
                ):
                    if out is None:
                        out = os.dup(writer.get_extra_info("socket").fileno())
                    there = fixed.executor.submit(answer_there, out, fixed.route, whole)
                    continue
                if whole is not None:
                    answer = await handler(whole)
                    if answer.stream is not None:
                        return  # the fixed route never streams; h11 never saw it
                    writer.write(fixed_answer(answer))
                    await writer.drain()
                    continue
                conn.receive_data(data)
            request = await _read_request(conn, reader)
            if request is None:
                return
            if isinstance(request, Response):
                await _send(conn, writer, request)
                await _discard(reader)
                return
            response = await handler(request)
            await _send(conn, writer, response)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError):
        return
    finally:
        if there is not None:
            with contextlib.suppress(ConnectionError):
                await asyncio.shield(_written(there, writer))
        if out is not None:
            os.close(out)
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _written(there: Future[bytes], writer: asyncio.StreamWriter) -> None:
    """Wait for an answer written from the fixed route's thread (already out when
    the client waited for it before sending again: then no wake-up at all), and
    write what the client's full buffer did not take then, here, as any answer."""
    if not there.done():
        await asyncio.wrap_future(there)
    rest = there.result()
    if rest:
        writer.write(rest)
        await writer.drain()


async def _discard(reader: asyncio.StreamReader, limit: int = 8 * MAX_BODY) -> None:
    """Read and drop what a refused client is still sending (a bounded amount), so
    that it can read our error answer instead of meeting a reset connection."""
    seen = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        while seen < limit:
            chunk = await asyncio.wait_for(reader.read(READ_CHUNK), 1.0)
            if not chunk:
                return
            seen += len(chunk)


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> Request | Response | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as problem:
            return error(400, "bad_request", f"malformed HTTP request: {problem}")
        if event is h11.NEED_DATA:
            data = await _read_some(reader)
            if data is None:
                return None
            if not data and head is None:
                return None
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
            length = dict(event.headers).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                return error(413, "body_too_large", f"request body over {MAX_BODY} bytes")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                return error(413, "body_too_large", f"request body over {MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            parts = urlsplit(head.target.decode("ascii", "replace"))
            return Request(
                method=head.method.decode("ascii"),
                path=unquote(parts.path),
                query=dict(parse_qsl(parts.query)),
                body=bytes(body),
            )
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _read_some(reader: asyncio.StreamReader) -> bytes | None:
    """What the client sent next (``b""``: it closed); ``None``: idle too long."""
    try:
        # asyncio.timeout, not wait_for: no task made for every read.
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            return await reader.read(READ_CHUNK)
    except TimeoutError:
        return None


def _payload(response: Response) -> bytes:
    try:
        return json.dumps(response.body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate somewhere in the answer: ASCII JSON escapes it instead.
        return json.dumps(response.body).encode("ascii")


def _answer_headers(response: Response, payload: bytes) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/json"),
        ("content-length", str(len(payload))),
        *response.headers,
    ]


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
    if response.stream is not None:
        headers = [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-store"),
            *response.headers,
        ]
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        await writer.drain()
        try:
            async for chunk in response.stream:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
        finally:
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        return
    payload = _payload(response)
    headers = _answer_headers(response, payload)
    if conn.their_state is not h11.DONE:
        headers.append(("connection", "close"))
    # One write, so one send(2): the client wakes once, to a whole answer.
    writer.write(
        b"".join(
            (
                conn.send(h11.Response(status_code=response.status, headers=headers)) or b"",
                conn.send(h11.Data(data=payload)) or b"",
                conn.send(h11.EndOfMessage()) or b"",
            )
        )
    )
    await writer.drain()
