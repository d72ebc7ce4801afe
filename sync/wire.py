"""Request bodies on the wire: JSON, optionally gzip (RFC 1952), always bounded.

Stdlib gzip rather than zstandard: every HTTP tool understands
``Content-Encoding: gzip``, JSON journal entries compress about 5:1 with it, and it
adds no dependency to the till. Decompression is bounded (``zlib.decompressobj``
with ``max_length``) so a small "zip bomb" cannot make HQ inflate gigabytes.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from typing import Any

from sync.errors import SyncError, invalid

# A batch of 500 entries is ~0.5 MB of JSON; leave room, refuse anything absurd.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_INFLATED_BYTES = 16 * 1024 * 1024


def too_large(limit: int) -> SyncError:
    return SyncError(
        "body_too_large",
        f"request body is larger than {limit} bytes",
        exit_status=2,
        http_status=413,
        details={"limit": limit},
    )


# Level 1 rather than 6: on a 500-entry batch (~295 kB of JSON) it takes ~1.3 ms
# instead of ~3.6 ms for a body ~8% larger (76 kB vs 71 kB), far under
# MAX_BODY_BYTES; inflating is as fast either way.
GZIP_LEVEL = 1


def encode_json(value: Any, *, compress: bool) -> bytes:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return gzip_body(raw) if compress else raw


def gzip_body(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)


# A till reads at most this much of one answer from HQ, inflated: the largest
# download page (the chain's suggestions and offers on the last one) is a few MB.
MAX_REPLY_BYTES = 64 * 1024 * 1024
# HQ gzips an answer over this size for a client that accepts it (a download page
# carrying the chain's suggestions shrinks about tenfold).
COMPRESS_OVER_BYTES = 8 * 1024


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (``q=0`` refuses it, RFC 9110)."""
    for part in (header or "").split(","):
        name, *params = (item.strip().lower().replace(" ", "") for item in part.split(";"))
        if name in ("gzip", "x-gzip"):
            return not any(_REFUSED.fullmatch(param) for param in params)
    return False


_REFUSED = re.compile(r"q=0(\.0{0,3})?")


def encode_reply(value: Any, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """An answer's JSON, gzipped (with the encoding to name) when it is large and the
    client takes gzip."""
    raw = encode_json(value, compress=False)
    if len(raw) > COMPRESS_OVER_BYTES and accepts_gzip(accept_encoding):
        return gzip_body(raw), "gzip"
    return raw, None


def inflate(body: bytes, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """Gunzip ``body``, refusing output past ``limit`` bytes or a broken stream."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise invalid("malformed_body", "body: not valid gzip") from None
    if len(out) > limit:
        raise too_large(limit)
    if not inflater.eof:
        raise invalid("malformed_body", "body: truncated gzip stream")
    return out


def decode_json(body: bytes, encoding: str | None) -> Any:
    """Parse a request body, gunzipping it if the client said so.

    Beyond JSON itself, what HQ can store and hash is refused here, once for
    every endpoint, with a 400 and nothing written: an integer outside signed
    64 bits (``integer_out_of_range``: no BIGINT column holds it) and a string
    or key holding a lone UTF-16 surrogate such as ``"\\ud800"``
    (``invalid_text``: valid JSON, but not Unicode, so it cannot be encoded as
    UTF-8). Nesting deeper than the parser's recursion bound (~1,000 levels) is
    ``malformed_json``."""
    if encoding and encoding.strip().lower() == "gzip":
        body = inflate(body)
    elif encoding and encoding.strip().lower() != "identity":
        raise SyncError(
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not supported (use gzip)",
            exit_status=2,
            http_status=415,
        )
    try:
        text = body.decode("utf-8")
        bounded = _bounded_int if _long_number(body) else None
        value = json.loads(text, parse_constant=_no_constants, parse_int=bounded)
    except _OutOfRange as error:
        raise invalid(
            "integer_out_of_range",
            f"body: an integer ({error.digits[:24]}...) is outside signed 64 bits",
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise invalid("malformed_json", f"body: not JSON: {error}") from None
    # A surrogate can only come from a \\u escape: most bodies hold none.
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise invalid(
            "invalid_text", "body: a string holds a lone UTF-16 surrogate, which is not text"
        )
    return value


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _OutOfRange(Exception):
    def __init__(self, digits: str) -> None:
        super().__init__(digits)
        self.digits = digits


_FLAT_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_RUN = b"0" * 19
# What may come before a JSON number: a separator, whitespace or its sign.
_BEFORE_NUMBER = frozenset(b":[, \t\r\n-")


def _long_number(raw: bytes) -> bool:
    """Whether ``raw`` may hold a number of 19 digits or more. A cheap scan, so
    that the parser checks integers one by one only then: runs of digits inside
    hex hashes and signatures follow a letter or a quote, not what precedes a
    number."""
    flat = raw.translate(_FLAT_DIGITS)
    start = flat.find(_RUN)
    while start != -1:
        if start == 0 or raw[start - 1] in _BEFORE_NUMBER:
            return True
        end = start + len(_RUN)
        while end < len(flat) and flat[end] == 0x30:
            end += 1
        start = flat.find(_RUN, end)
    return False


def _bounded_int(digits: str) -> int:
    # 19 digits and a sign at most; checked before ``int`` for a long run of digits.
    if len(digits) >= 19 and (len(digits) > 20 or not INT64_MIN <= int(digits) <= INT64_MAX):
        raise _OutOfRange(digits)
    return int(digits)


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a lone surrogate in any string or key
    (``json`` joins an escaped pair into one character, so any left is lone)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
