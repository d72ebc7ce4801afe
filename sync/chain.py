"""The signed, hash-chained journal format: pure encoding and verification.

Both ends use this module: the till when it appends and verifies its own log, HQ
when it checks an upload. Nothing here touches a file or a socket.

Each entry is canonical JSON (sorted keys, no spaces, UTF-8, integers only) of
``{v, device, seq, ts, kind, staff, body, prev}``. Its ``hash`` is SHA-256 of those
bytes; its ``sig`` is an Ed25519 signature (RFC 8032) over a domain-separation tag
plus the hash. ``prev`` is the previous entry's hash (64 zeros for sequence 1), so
any edit, deletion, insertion or reordering breaks the chain at a known sequence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT_VERSION = 1
GENESIS_PREV = "0" * 64
SIGNATURE_TAG = b"tillpoints-entry-v1\x00"


def canonical(value: Any, *, checked: bool = False) -> bytes:
    """Canonical bytes of a JSON value. Floats are refused: money and points are ints.
    ``checked=True`` skips that walk for a value already checked (the signing path
    encodes the same body more than once)."""
    if not checked:
        _reject_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("journal values must not be floats")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list):
        for item in value:
            _reject_floats(item)


@dataclass(frozen=True)
class Entry:
    """One journal entry as it is stored and shipped."""

    device: str
    seq: int
    ts: str
    kind: str
    staff: str | None
    body: dict[str, Any]
    prev: str
    hash: str
    sig: str

    def unsigned(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "device": self.device,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "staff": self.staff,
            "body": self.body,
            "prev": self.prev,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.unsigned(), "hash": self.hash, "sig": self.sig}

    @classmethod
    def from_json(cls, value: Any) -> Entry:
        """Build an entry from decoded JSON, refusing anything of the wrong shape."""
        if not isinstance(value, dict):
            raise ValueError("entry is not an object")
        expected = {"v", "device", "seq", "ts", "kind", "staff", "body", "prev", "hash", "sig"}
        if set(value) != expected:
            raise ValueError(f"entry keys differ: {sorted(set(value) ^ expected)}")
        if value["v"] != FORMAT_VERSION:
            raise ValueError(f"unknown entry format {value['v']!r}")
        checks = (
            isinstance(value["device"], str),
            isinstance(value["seq"], int) and not isinstance(value["seq"], bool),
            isinstance(value["ts"], str),
            isinstance(value["kind"], str),
            value["staff"] is None or isinstance(value["staff"], str),
            isinstance(value["body"], dict),
            isinstance(value["prev"], str),
            isinstance(value["hash"], str),
            isinstance(value["sig"], str),
        )
        if not all(checks):
            raise ValueError("entry field of the wrong type")
        return cls(
            device=value["device"],
            seq=value["seq"],
            ts=value["ts"],
            kind=value["kind"],
            staff=value["staff"],
            body=value["body"],
            prev=value["prev"],
            hash=value["hash"],
            sig=value["sig"],
        )


def entry_hash(unsigned: dict[str, Any], *, checked: bool = False) -> str:
    return hashlib.sha256(canonical(unsigned, checked=checked)).hexdigest()


def sign_entry(
    key: Ed25519PrivateKey,
    *,
    device: str,
    seq: int,
    ts: str,
    kind: str,
    staff: str | None,
    body: dict[str, Any],
    prev: str,
) -> Entry:
    _reject_floats(body)
    draft = Entry(device, seq, ts, kind, staff, body, prev, hash="", sig="")
    digest = entry_hash(draft.unsigned(), checked=True)
    signature = key.sign(SIGNATURE_TAG + bytes.fromhex(digest)).hex()
    return Entry(device, seq, ts, kind, staff, body, prev, hash=digest, sig=signature)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking a run of entries."""

    ok: bool
    entries: int
    head: str
    head_seq: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"ok": self.ok, "entries": self.entries, "head": self.head}
        if not self.ok:
            result["first_bad_seq"] = self.first_bad_seq
            result["reason"] = self.reason
        return result


def verify_chain(
    entries: Iterable[Entry],
    public_key: Ed25519PublicKey,
    *,
    device: str | None = None,
    start_seq: int = 1,
    start_prev: str = GENESIS_PREV,
) -> ChainReport:
    """Check sequence, links, hashes and signatures; stop at the first bad entry.

    ``start_seq``/``start_prev`` let HQ continue from the last entry it holds.
    """
    expected_seq, prev, count = start_seq, start_prev, 0
    for entry in entries:
        reason = _first_problem(entry, public_key, device, expected_seq, prev)
        if reason is not None:
            return ChainReport(False, count, prev, expected_seq - 1, expected_seq, reason)
        prev, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return ChainReport(True, count, prev, expected_seq - 1)


def _first_problem(
    entry: Entry,
    public_key: Ed25519PublicKey,
    device: str | None,
    expected_seq: int,
    prev: str,
) -> str | None:
    if entry.seq != expected_seq:
        return f"sequence gap: expected {expected_seq}, found {entry.seq}"
    if device is not None and entry.device != device:
        return f"entry belongs to device {entry.device!r}, not {device!r}"
    if entry.prev != prev:
        return "previous-hash link broken (an entry was removed, inserted or reordered)"
    try:
        digest = entry_hash(entry.unsigned())
    except (TypeError, ValueError):
        return "entry cannot be encoded canonically"
    if digest != entry.hash:
        return "hash mismatch (the entry was edited)"
    try:
        public_key.verify(bytes.fromhex(entry.sig), SIGNATURE_TAG + bytes.fromhex(entry.hash))
    except (InvalidSignature, ValueError):
        return "bad signature"
    return None


# -- the batch path (HQ): the same bytes, encoded once ---------------------------------


def canonical_entry(entry: Entry) -> tuple[bytes, bytes]:
    """``canonical(entry.unsigned())`` and ``canonical(entry.body)``, encoding the
    body once.

    HQ needs both for every uploaded entry: the first to check the hash, the second
    to store. With sorted keys, ``"body"`` is the first key of the unsigned entry
    and JSON encoding is context-free, so the unsigned bytes are exactly
    ``{"body":`` + body bytes + the other fields' encoding; no second walk of the
    body. Raises what ``canonical`` raises (floats, NaN)."""
    body = canonical(entry.body, checked=_floatless(entry.body))
    fields = {
        "v": FORMAT_VERSION,
        "device": entry.device,
        "seq": entry.seq,
        "ts": entry.ts,
        "kind": entry.kind,
        "staff": entry.staff,
        "prev": entry.prev,
    }
    rest = canonical(fields, checked=_floatless(fields))
    return b'{"body":' + body + b"," + rest[1:], body


_SCALARS = (str, int, bool, type(None))


def _floatless(value: Any) -> bool:
    """True, or raise ``_reject_floats``'s TypeError: the same verdict, walked
    without recursion for the exact types ``json.loads`` produces (anything else
    goes through ``_reject_floats`` itself)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        else:
            _reject_floats(item)
    return True
