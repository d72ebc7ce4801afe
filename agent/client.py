"""A client of the agent's local API over its Unix socket (used by `status` and by
the cashier UI). Plain ``http.client``: the socket speaks HTTP/1.1 like any
server, so ``curl --unix-socket`` works just the same."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

from agent.errors import LedgerError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("till", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class AgentError(LedgerError):
    """An error answer from the agent, keeping its HTTP status and stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.http_status = status
        self.exit_status = {400: 2, 409: 3, 429: 3}.get(status, 1)


class AgentClient:
    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path, self.timeout = socket_path, timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"content-type": "application/json"} if payload is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as error:
            raise LedgerError(
                "agent_unreachable", f"the agent at {self.socket_path} did not answer: {error}"
            ) from None
        finally:
            connection.close()
        if response.status >= 400:
            code = data.get("error", "error") if isinstance(data, dict) else "error"
            message = data.get("message", "") if isinstance(data, dict) else str(data)
            raise AgentError(response.status, code, message)
        return data

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def events(self, timeout: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-Sent Events as ``(event, data)`` pairs, until the agent stops."""
        connection = _UnixConnection(self.socket_path, timeout or 3600.0)
        try:
            connection.request("GET", "/v1/events")
            response = connection.getresponse()
            event, data = "message", ""
            while True:
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif not line and data:
                    yield event, json.loads(data)
                    event, data = "message", ""
        finally:
            connection.close()
