"""The fixed-shape request reader (``agent.http.fixed_request``, issue 18) against h11.

Every request it reads, h11 (``agent.http._read_request``, the path it skips) reads
the same, whole, with nothing left over; whatever it does not read goes to h11. Its
answers are h11's bytes. Held over hand-made hostile requests and generated ones,
at the parser and through a real socket served both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import http
from agent.http import MAX_BODY, Request, Response, fixed_answer, fixed_request

BODY = b'{"member": "9900000000000009", "receipt": "R1", "amount": "12.34"}'


def _pos(body: bytes = BODY, extra: bytes = b"") -> bytes:
    """What a POS sends (``tillpoints.bench_api``)."""
    return (
        b"POST /v1/earn HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def _h11_reads(data: bytes) -> tuple[Request | Response | None, h11.Connection]:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    conn.receive_data(data)

    async def read() -> Request | Response | None:
        reader = asyncio.StreamReader()
        reader.feed_eof()
        return await http._read_request(conn, reader)

    return asyncio.run(read()), conn


def _agrees_with_h11(data: bytes) -> Request | None:
    fixed = fixed_request(data)
    if fixed is not None:
        slow, conn = _h11_reads(data)
        assert slow == fixed
        assert conn.their_state is h11.DONE
        assert conn.trailing_data == (b"", False)
    return fixed


HOSTILE = [
    _pos(),
    _pos(extra=b"Connection: keep-alive\r\n"),
    _pos(extra=b"connection: Keep-Alive\r\nUser-Agent: pos/1.0 (till)\r\nAccept: */*\r\n"),
    _pos(extra=b"Connection: close\r\n"),
    _pos(extra=b"Transfer-Encoding: chunked\r\n"),
    _pos(extra=b"Expect: 100-continue\r\n"),
    _pos(extra=b"Content-Length: 3\r\n"),
    _pos(extra=b"Host: other\r\n"),
    _pos(extra=b" folded\r\n"),
    _pos(extra=b"X-Odd:\xff\r\n"),
    _pos(extra=b"Bad Name: 1\r\n"),
    _pos(extra=b"Host:\r\n"),
    _pos(body=b""),
    _pos()[:-1],
    _pos() + b"POST",
    _pos() + _pos(),
    _pos().replace(b"\r\n", b"\n"),
    _pos().replace(b"HTTP/1.1", b"HTTP/1.0"),
    _pos().replace(b"/v1/earn", b"/v1/earn?x=1"),
    _pos().replace(b"/v1/earn", b"/v1/earn/"),
    _pos().replace(b"POST", b"post"),
    _pos().replace(b"Host: agent\r\n", b""),
    _pos().replace(b"Content-Length: ", b"Content-Length: +"),
    _pos().replace(b"Content-Length: ", b"Content-Length: 0"),
    _pos().replace(b"Content-Length: ", b"Content-Length:  \t"),
    _pos().replace(b"Host: agent", b"Host: agent \t"),
    _pos().replace(b"Host: agent", b"Host : agent"),
    b"POST /v1/earn HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
    b"POST /v1/earn HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
    b"POST /v1/earn HTTP/1.1\r\n\r\n",
    b"POST /v1/earn HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"NONSENSE\r\n\r\n",
    b"",
]


@pytest.mark.parametrize("data", HOSTILE)
def test_hostile_requests_are_read_as_h11_reads_them_or_left_to_it(data: bytes) -> None:
    _agrees_with_h11(data)


def test_what_a_pos_sends_is_read_without_h11() -> None:
    for data in (_pos(), _pos(extra=b"Connection: keep-alive\r\n"), _pos(body=b"{}")):
        assert _agrees_with_h11(data) is not None
    left_to_h11 = [
        _pos(extra=b"Connection: close\r\n"),
        _pos(extra=b"Transfer-Encoding: chunked\r\n"),
        _pos(extra=b"Expect: 100-continue\r\n"),
        _pos(extra=b"Content-Length: 3\r\n"),
        _pos(extra=b"Host: other\r\n"),
        _pos()[:-1],
        _pos() + _pos(),
        _pos().replace(b"HTTP/1.1", b"HTTP/1.0"),
        _pos().replace(b"/v1/earn", b"/v1/earn?x=1"),
        _pos().replace(b"Host: agent\r\n", b""),
        b"POST /v1/earn HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
    ]
    for data in left_to_h11:
        assert fixed_request(data) is None


_NAMES = st.sampled_from(
    [
        b"Host",
        b"host",
        b"HOST",
        b"Content-Type",
        b"Content-Length",
        b"content-length",
        b"Connection",
        b"User-Agent",
        b"Accept",
        b"Transfer-Encoding",
        b"Expect",
        b"X-Till",
        b"Ho st",
        b"",
    ]
)
_VALUE = st.binary(max_size=12) | st.sampled_from(
    [b"agent", b"keep-alive", b"close", b"chunked", b"application/json", b" a b ", b"\t1"]
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    body = draw(st.sampled_from([BODY, b"", b"{}"]) | st.binary(max_size=40))
    line = draw(
        st.sampled_from(
            [
                b"POST /v1/earn HTTP/1.1",
                b"POST /v1/earn HTTP/1.0",
                b"POST /v1/earn?a=b HTTP/1.1",
                b"GET /v1/earn HTTP/1.1",
                b"POST  /v1/earn HTTP/1.1",
                b"POST /v1/earn HTTP/1.1 ",
            ]
        )
    )
    headers: list[bytes] = []
    if draw(st.booleans()):
        headers.append(b"Host: agent")
    length = draw(
        st.sampled_from([b"%d" % len(body), b"%d" % (len(body) + 1), b"0%d" % len(body), b""])
    )
    if draw(st.integers(0, 4)):
        headers.append(b"Content-Length: " + length)
    for _ in range(draw(st.integers(0, 3))):
        name, sep, value = draw(_NAMES), draw(st.sampled_from([b": ", b":", b" : "])), draw(_VALUE)
        headers.insert(draw(st.integers(0, len(headers))), name + sep + value)
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    data = line + end + b"".join(header + end for header in headers) + end + body
    cut = draw(st.sampled_from([None, None, None, -1, 5]))
    tail = draw(st.sampled_from([b"", b"", b"", b"\r\n", b"POST"]))
    return (data if cut is None else data[:cut]) + tail


@settings(max_examples=3000, deadline=None)
@given(_requests())
def test_generated_requests_are_read_as_h11_reads_them_or_left_to_it(data: bytes) -> None:
    _agrees_with_h11(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([200, 400, 404, 409, 413, 500]),
    st.dictionaries(st.text(max_size=8), st.text(max_size=20) | st.integers(), max_size=4),
    st.lists(st.sampled_from([("x-till", "T01"), ("Cache-Control", "no-store")]), max_size=2),
)
def test_answers_are_the_bytes_h11_sends(
    status: int, body: dict[str, Any], headers: list[tuple[str, str]]
) -> None:
    response = Response(status, body, headers=headers)
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(_pos())
    while conn.next_event() is not h11.NEED_DATA and conn.their_state is not h11.DONE:
        pass
    payload = http._payload(response)
    expected = b"".join(
        (
            conn.send(
                h11.Response(status_code=status, headers=http._answer_headers(response, payload))
            )
            or b"",
            conn.send(h11.Data(data=payload)) or b"",
            conn.send(h11.EndOfMessage()) or b"",
        )
    )
    assert fixed_answer(response) == expected


def _served(chunks: list[bytes], on_bridge: bool = False) -> tuple[bytes, list[Request]]:
    """Serve one connection over a real socket pair: each chunk sent after the
    answer to the one before it has arrived (as a POS waits), then the client
    closes its side; everything it read back, and what the handler saw.
    ``on_bridge``: the fixed request answered from a thread of its own
    (``agent.http.FixedRoute``, as the agent does)."""
    seen: list[Request] = []

    def echo(request: Request) -> Response:
        seen.append(request)
        return Response(200, {"path": request.path, "body": request.body.decode("latin-1")})

    async def handler(request: Request) -> Response:
        return echo(request)

    async def run() -> bytes:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        fixed = http.FixedRoute(bridge, echo) if on_bridge else None
        server = asyncio.create_task(http.serve_connection(reader, writer, handler, fixed))
        client_reader, client_writer = await asyncio.open_unix_connection(sock=theirs)
        received = b""
        try:
            for chunk in chunks:
                client_writer.write(chunk)
                await client_writer.drain()
                with contextlib.suppress(TimeoutError):
                    received += await asyncio.wait_for(client_reader.read(65536), 0.3)
            client_writer.write_eof()
        except ConnectionError:
            pass  # the server closed first (it answered `Connection: close`)
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(client_reader.read(65536), 5):
                received += chunk
        await asyncio.wait_for(server, 5)
        client_writer.close()
        return received

    with ThreadPoolExecutor(max_workers=1) as bridge:
        return asyncio.run(run()), seen


CONVERSATIONS = [
    [_pos(), _pos(body=b"{}"), _pos()],
    [_pos(), _pos(), _pos() + _pos(), _pos()],
    [_pos(), b"GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n", _pos()],
    [_pos()[:30], _pos()[30:], _pos()],
    [_pos() + _pos(), _pos()],
    [_pos(extra=b"Connection: close\r\n"), _pos()],
    [_pos(), b"NONSENSE\r\n\r\n"],
    [_pos(), _pos(extra=b"Transfer-Encoding: chunked\r\n")],
]


@pytest.mark.parametrize("chunks", CONVERSATIONS)
def test_a_connection_is_answered_the_same_with_and_without_the_fixed_reader(
    chunks: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, fast_seen = _served(chunks)
    bridged, bridged_seen = _served(chunks, on_bridge=True)
    assert (bridged, bridged_seen) == (fast, fast_seen)
    monkeypatch.setattr(http, "fixed_request", lambda data: None)
    slow, slow_seen = _served(chunks)
    assert fast == slow
    assert fast_seen == slow_seen
    assert json.loads(fast.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path"]


def test_an_answer_written_from_the_bridge_reaches_its_own_connection_only(
    tmp_path: Any,
) -> None:
    """A POS that sends an earn and goes, leaving an answer unread, resets the
    connection: the loop closes its descriptor at once, while the bridge still
    works on the earn. The next connection may be given that descriptor's number;
    the earn's answer must not reach it."""
    path = str(tmp_path / "agent.sock")
    entered, release = threading.Event(), threading.Event()

    def slow_earn(request: Request) -> Response:
        entered.set()
        release.wait(5)
        return Response(200, {"for": "the first POS"})

    async def handler(request: Request) -> Response:
        return Response(200, {"status": "ok"})

    async def run() -> bytes:
        loop = asyncio.get_running_loop()
        fixed = http.FixedRoute(bridge, slow_earn)
        server = await asyncio.start_unix_server(
            lambda reader, writer: http.serve_connection(reader, writer, handler, fixed), path
        )
        first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        first.connect(path)
        first.sendall(b"GET /v1/status HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.2)  # its answer waits, unread, in the first POS's buffer
        first.sendall(_pos())
        assert await loop.run_in_executor(None, entered.wait, 5)
        first.close()  # unread data: the agent's end is reset
        await asyncio.sleep(0.2)
        second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        second.connect(path)
        await asyncio.sleep(0.2)  # accepted: it may hold the first one's number
        release.set()
        await asyncio.sleep(0.3)
        second.setblocking(False)
        try:
            received = second.recv(65536)
        except BlockingIOError:
            received = b""
        second.close()
        server.close()
        await server.wait_closed()
        return received

    with ThreadPoolExecutor(max_workers=1) as bridge:
        assert asyncio.run(run()) == b""


def test_a_client_that_reads_no_answer_never_holds_the_ledger_s_thread() -> None:
    """A POS that sends earns and reads none of their answers fills its socket's
    buffer. The ledger's thread writes what the buffer takes and leaves the rest to
    the loop: it stays free for every other writer of the till, and the client,
    once it reads, gets every answer whole and in order."""
    big = "x" * 50_000  # a few answers fill a socket's buffer

    def earn(request: Request) -> Response:
        return Response(200, {"receipt": json.loads(request.body)["receipt"], "pad": big})

    async def handler(request: Request) -> Response:
        return earn(request)

    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        server = asyncio.create_task(
            http.serve_connection(reader, writer, handler, http.FixedRoute(bridge, earn))
        )
        theirs.setblocking(False)
        for number in range(40):
            body = b'{"member": "9900000000000009", "receipt": "R%d", "amount": "1.00"}' % number
            await loop.sock_sendall(theirs, _pos(body=body))
            await asyncio.sleep(0.005)
        # Nothing read yet: the ledger's thread must answer another writer at once.
        free = await asyncio.wait_for(loop.run_in_executor(bridge, lambda: "free"), 2)
        assert free == "free"
        received = b""
        while received.count(b"HTTP/1.1 200") < 40 or not received.endswith(b"}"):
            received += await asyncio.wait_for(loop.sock_recv(theirs, 1 << 20), 5)
        theirs.close()
        await asyncio.wait_for(server, 5)
        answers = [
            json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in received.split(b"HTTP/1.1 ")[1:]
        ]
        return [answer["receipt"] for answer in answers]

    with ThreadPoolExecutor(max_workers=1) as bridge:
        assert asyncio.run(run()) == [f"R{number}" for number in range(40)]
