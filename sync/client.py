"""The till's HTTP client for HQ: timeouts, bounded retries, verified TLS.

Retries cover what a flaky store network does: refused or cut connections,
timeouts, a response cut short, a 5xx from HQ or its load balancer, and HQ's
``concurrent_upload`` (another worker stored the same rows first). Waits grow
exponentially with jitter (so a thousand tills retrying do not align) and are
bounded in count and length. A certificate that does not verify is never
retried and never ignored: there is no switch to turn verification off, only a
CA bundle to trust (``requests`` ``verify=``). Plain ``http://`` is accepted for
loopback addresses only, where tests and an on-box proxy live.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.errors import SyncError, invalid, unreachable
from sync.protocol import sign_request
from sync.wire import MAX_REPLY_BYTES, encode_json, gzip_body


def _user_agent() -> str:
    """``tillpoints/VERSION``: HQ shows which software each till runs (``hq devices``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"tillpoints/{version('tillpoints')}"
    except PackageNotFoundError:
        return "tillpoints/unknown"


USER_AGENT = _user_agent()

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_RETRY_STATUSES = {500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 8.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0

    def delay(self, attempt: int, rng: Callable[[], float]) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        ceiling = min(self.cap_s, self.base_s * float(2**attempt))
        return ceiling / 2 + rng() * ceiling / 2


@dataclass(frozen=True)
class Signer:
    """The till's transport identity: its device id and transport key."""

    device: str
    key: Ed25519PrivateKey


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url.rstrip("/")
    raise invalid("invalid_hq_url", "hq: an https:// URL (http:// only on loopback)")


class HQClient:
    def __init__(
        self,
        base_url: str,
        *,
        ca: Path | None = None,
        signer: Signer | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.base_url = check_url(base_url)
        if ca is not None and not ca.is_file():
            raise invalid("invalid_ca", f"ca: {ca} is not a readable file")
        self.verify: str | bool = str(ca) if ca is not None else True
        self.signer, self.policy = signer, policy or RetryPolicy()
        self.sleep, self.rng, self.clock = sleep, rng, clock
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def twin(self) -> HQClient:
        """The same HQ, trust and credentials over a session of its own: a
        ``requests.Session`` is not for two threads at once."""
        twin = copy.copy(self)
        twin.session = requests.Session()
        return twin

    def get(self, target: str) -> Reply:
        return self.call("GET", target, b"", {})

    def post(self, target: str, value: Any, *, compress: bool = False) -> Reply:
        return self.post_json(target, encode_json(value, compress=False), compress=compress)

    def post_json(self, target: str, text: bytes, *, compress: bool = False) -> Reply:
        """POST JSON the caller has already encoded (a batch built from journal rows)."""
        return self.post_wire(target, gzip_body(text) if compress else text, gzipped=compress)

    def post_wire(self, target: str, body: bytes, *, gzipped: bool) -> Reply:
        """POST a JSON body as it goes on the wire, gzipped or not (``bench_night``
        compresses a night's batches before its clock starts)."""
        headers = {"Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return self.call("POST", target, body, headers)

    def call(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Send with retries; return HQ's answer (any status that is not retryable)."""
        last = "no attempt made"
        for attempt in range(self.policy.attempts):
            if attempt:
                self.sleep(self.policy.delay(attempt - 1, self.rng))
            try:
                reply = self._once(method, target, body, headers)
            except requests.exceptions.SSLError as error:
                raise SyncError(
                    "tls_error", f"HQ's TLS certificate does not verify: {error}"
                ) from None
            except (requests.exceptions.RequestException, ValueError) as error:
                last = f"{type(error).__name__}: {error}"
                continue
            if reply.status in _RETRY_STATUSES or reply.body.get("error") == "concurrent_upload":
                last = f"HQ answered {reply.status} {reply.body.get('error')}"
                continue
            return reply
        raise unreachable(f"HQ at {self.base_url} not reached after retries ({last})")

    def _once(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Reply:
        sent = {"User-Agent": USER_AGENT, **headers}
        if self.signer is not None:
            sent.update(
                sign_request(
                    self.signer.key, self.signer.device, method, target, body, self.clock()
                )
            )
        response = self.session.request(
            method,
            self.base_url + target,
            data=body or None,
            headers=sent,
            timeout=(self.policy.connect_timeout_s, self.policy.read_timeout_s),
            verify=self.verify,
            stream=True,
        )
        # A response cut short raises here (ValueError), and is retried.
        payload = json.loads(_bounded(response, MAX_REPLY_BYTES).decode("utf-8"))
        if not isinstance(payload, dict):
            raise ValueError("HQ's answer is not a JSON object")
        return Reply(response.status_code, payload)


def _bounded(response: requests.Response, limit: int) -> bytes:
    """The answer's body, inflated (requests undoes gzip), read in chunks and refused
    past ``limit``: neither a hostile network nor a runaway HQ can fill the till's
    memory (a gzip body of a few kB can inflate to gigabytes)."""
    chunks, size = [], 0
    with response:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > limit:
                raise SyncError(
                    "reply_too_large",
                    f"HQ's answer is over {limit} bytes: refused, nothing applied",
                    details={"limit": limit},
                )
            chunks.append(chunk)
    return b"".join(chunks)
