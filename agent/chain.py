"""The signed, hash-chained journal format: pure encoding and verification.

Both ends use this module: the till when it appends and verifies its own log, HQ
when it checks an upload. Nothing here touches a file or a socket.

Each entry is canonical JSON (sorted keys, no spaces, UTF-8, integers only) of
``{v, device, seq, ts, kind, staff, body, prev}``. Its *digest* is SHA-256 of those
bytes; its ``sig`` is an Ed25519 signature (RFC 8032) over a domain-separation tag
plus the digest; its ``hash`` is SHA-256 of the digest followed by the signature's
hex text. ``prev`` is the previous entry's hash (64 zeros for sequence 1), so any
edit, deletion, insertion or reordering breaks the chain at a known sequence.

Because the hash seals the signature too, each entry's hash commits to every byte
of every entry before it, signatures included. One valid signature therefore
vouches for the whole run of entries it ends: HQ checks the links and hashes of
an upload and the signatures of its last entry and of each ``key_rotate`` entry
(``sync.hq.judge``), while ``log verify`` and ``hq verify`` still check every one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.entries import Body, Kind, Refused, readable, text_reader
from agent.keys import load_public_key

FORMAT_VERSION = 2
GENESIS_PREV = "0" * 64
SIGNATURE_TAG = b"tillpoints-entry-v2\x00"


def canonical(value: Any, *, checked: bool = False) -> bytes:
    """Canonical bytes of a JSON value. Floats are refused: money and points are ints.
    ``checked=True`` skips that walk for a value already checked (the signing path
    encodes the same body more than once)."""
    if not checked:
        _reject_floats(value)
    if _C_ENCODER is None:
        return _ENCODER.encode(value).encode("utf-8")
    return "".join(_C_ENCODER(value, 0)).encode("utf-8")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# The C encoder ``_ENCODER.encode`` builds afresh on every call, made once (a
# third of the cost of encoding a small body). No circular-reference markers:
# journal values are trees. Same arguments, same bytes (tests/test_sync_verify.py).
_MAKE_C_ENCODER: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = (
    _MAKE_C_ENCODER(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    if _MAKE_C_ENCODER is not None
    else None
)


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


def content_digest(unsigned: dict[str, Any], *, checked: bool = False) -> bytes:
    """What the device key signs: SHA-256 of the canonical unsigned entry."""
    return hashlib.sha256(canonical(unsigned, checked=checked)).digest()


def seal(digest: bytes, sig: str) -> str:
    """An entry's ``hash``: its digest and its signature, hashed together. A
    signature that is not lowercase hex simply seals to another hash."""
    return hashlib.sha256(digest + sig.encode("utf-8", "surrogatepass")).hexdigest()


def signature_valid(public_key: Ed25519PublicKey, digest: bytes, sig: str) -> bool:
    try:
        public_key.verify(bytes.fromhex(sig), SIGNATURE_TAG + digest)
    except (InvalidSignature, ValueError):
        return False
    return True


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
    typed: bool = False,
) -> Entry:
    """``typed``: ``body`` is the ``to_body()`` of a typed body (``agent.entries``),
    whose fields are ints and texts, so the walk that refuses floats is skipped
    (the simulated till signs millions; HQ still walks each body it is sent)."""
    draft = Entry(device, seq, ts, kind, staff, body, prev, hash="", sig="")
    return sign_draft(key, draft, typed=typed)[0]


def sign_draft(key: Ed25519PrivateKey, draft: Entry, *, typed: bool = False) -> tuple[Entry, bytes]:
    """Sign ``draft`` (its ``hash`` and ``sig`` are ignored); also return
    ``canonical(draft.body)``, so that the till stores the very bytes it signed,
    encoded once (``canonical_entry``)."""
    unsigned, body_bytes = canonical_entry(draft, typed=typed)
    digest = hashlib.sha256(unsigned).digest()
    signature = key.sign(SIGNATURE_TAG + digest).hex()
    d = draft
    entry = Entry(
        d.device, d.seq, d.ts, d.kind, d.staff, d.body, d.prev, seal(digest, signature), signature
    )
    return entry, body_bytes


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
    """Check sequence, links, hashes and every signature with one key (no
    rotations followed); stop at the first bad entry.

    ``start_seq``/``start_prev`` let HQ continue from the last entry it holds.
    """
    return walk_chain(
        entries,
        public_key,
        signatures="every",
        rotations=False,
        device=device,
        start_seq=start_seq,
        start_prev=start_prev,
    ).report


# -- the one walker ---------------------------------------------------------------------

Signatures = Literal["every", "run_ends"]
HASH_MISMATCH = "hash mismatch (the entry was edited)"


def rotated_key(entry: Entry) -> Ed25519PublicKey | None:
    """The new key a ``key_rotate`` entry introduces, or None if it names none."""
    text = entry.body.get("public_key")
    if not isinstance(text, str):
        return None
    try:
        return load_public_key(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Walk:
    """What ``walk_chain`` found."""

    report: ChainReport
    # The key in force after the good entries (the one the first bad entry is under).
    key: Ed25519PublicKey
    # ``canonical(entry.body)`` of each good entry, when asked for (what HQ stores).
    bodies: tuple[bytes, ...] = ()


class _Link(NamedTuple):
    """An entry of the current key run whose signature is not checked yet (a
    tuple: one is made per uploaded entry, a frozen dataclass cost two to three
    times as much)."""

    digest: bytes
    sig: str
    hash: str
    key: Ed25519PublicKey


def walk_chain(
    entries: Iterable[Entry],
    public_key: Ed25519PublicKey,
    *,
    signatures: Signatures,
    rotations: bool,
    device: str | None = None,
    start_seq: int = 1,
    start_prev: str = GENESIS_PREV,
    bodies: bool = False,
    encode: Callable[[Entry], tuple[bytes, bytes]] | None = None,
) -> Walk:
    """Walk a run of entries in order and stop at the first bad one.

    Every entry's sequence, device, link (``prev``) and hash are checked. With
    ``rotations``, a ``key_rotate`` entry hands over to the key it names (signed by
    the key it retires, it ends that key's run). Signatures:

    - ``"every"``: each entry's, as it comes (``log verify``, ``hq verify``).
    - ``"run_ends"``: only the last good entry's and each ``key_rotate``'s. An
      entry's hash seals its signature and its ``prev``, so one valid signature
      vouches for every entry of its run before it. Where a run's end fails, that
      run is checked entry by entry to name the first bad signature. The one
      different verdict: a signature the key's holder itself made invalid and then
      sealed into its chain under a valid one; nobody else can produce that, and
      only ``"every"`` names it (``tests/test_chain_walk.py``).

    A bad signature is reported before a later broken link or hash: the first bad
    seq is the same under both policies.

    ``encode`` gives an entry's digest and canonical body bytes (default
    ``canonical_digest``); it raises TypeError or ValueError for an entry that
    cannot be encoded canonically."""
    every, encode = signatures == "every", encode or canonical_digest
    run: list[_Link] = []  # "run_ends": the current run's entries, signatures pending
    kept: list[bytes] = []
    failure: str | None = None
    good, expected_seq, prev, key = 0, start_seq, start_prev, public_key
    run_start, run_prev = 0, start_prev  # the run's first entry (index) and its link
    for entry in entries:
        failure = _link_problem(entry, device, expected_seq, prev)
        if failure is None:
            try:
                digest, body = encode(entry)
            except (TypeError, ValueError):
                failure = "entry cannot be encoded canonically"
            else:
                if seal(digest, entry.sig) != entry.hash:
                    failure = HASH_MISMATCH
                elif every and not signature_valid(key, digest, entry.sig):
                    failure = "bad signature"
        if failure is not None:
            break
        if not every:
            run.append(_Link(digest, entry.sig, entry.hash, key))
        if rotations and entry.kind == Kind.KEY_ROTATE:
            if run:
                bad = _first_bad_signature(run)
                if bad is not None:
                    return _failed(run, bad, run_start, run_prev, start_seq, kept)
                run.clear()
            new_key = rotated_key(entry)
            if new_key is None:  # reported only once its signature holds
                failure = "key_rotate entry names no valid Ed25519 key"
                break
            key = new_key
        if bodies:
            kept.append(body)
        good, expected_seq, prev = good + 1, expected_seq + 1, entry.hash
        if not run:
            run_start, run_prev = good, prev
    if run:
        bad = _first_bad_signature(run)
        if bad is not None:
            return _failed(run, bad, run_start, run_prev, start_seq, kept)
    if failure is None:
        return Walk(ChainReport(True, good, prev, expected_seq - 1), key, tuple(kept))
    report = ChainReport(False, good, prev, expected_seq - 1, expected_seq, failure)
    return Walk(report, key, tuple(kept))


def _first_bad_signature(run: list[_Link]) -> int | None:
    """None if the run's last signature holds, else the index of its first bad one."""
    end = run[-1]
    if signature_valid(end.key, end.digest, end.sig):
        return None
    return next(
        i for i, link in enumerate(run) if not signature_valid(link.key, link.digest, link.sig)
    )


def _failed(
    run: list[_Link], bad: int, run_start: int, run_prev: str, start_seq: int, kept: list[bytes]
) -> Walk:
    """The answer when ``run[bad]`` has the first bad signature; the run begins
    ``run_start`` entries after the walk's start and links to ``run_prev``."""
    good = run_start + bad
    head = run[bad - 1].hash if bad else run_prev
    report = ChainReport(False, good, head, start_seq + good - 1, start_seq + good, "bad signature")
    return Walk(report, run[bad].key, tuple(kept[:good]))


def _link_problem(entry: Entry, device: str | None, expected_seq: int, prev: str) -> str | None:
    """Sequence, device, link: what is checked before the hash."""
    if entry.seq != expected_seq:
        return f"sequence gap: expected {expected_seq}, found {entry.seq}"
    if device is not None and entry.device != device:
        return f"entry belongs to device {entry.device!r}, not {device!r}"
    if entry.prev != prev:
        return "previous-hash link broken (an entry was removed, inserted or reordered)"
    return None


# -- the batch path (HQ): the same bytes, encoded once ---------------------------------


def canonical_entry(entry: Entry, *, typed: bool = False) -> tuple[bytes, bytes]:
    """``canonical(entry.unsigned())`` and ``canonical(entry.body)``, encoding the
    body once.

    HQ needs both for every uploaded entry: the first to check the hash, the second
    to store. With sorted keys, ``"body"`` is the first key of the unsigned entry
    and JSON encoding is context-free, so the unsigned bytes are exactly
    ``{"body":`` + body bytes + the other fields' encoding; no second walk of the
    body. The other fields are a fixed shape (``Entry.from_json`` checks their
    types) and are spliced in with the encoder's own string escaping. Raises what
    ``canonical`` raises (floats, NaN); ``typed`` as for ``sign_entry``."""
    body = canonical(entry.body, checked=typed or _floatless(entry.body))
    return b'{"body":' + body + _fields(entry), body


def canonical_digest(entry: Entry) -> tuple[bytes, bytes]:
    """``content_digest(entry.unsigned())`` and ``canonical(entry.body)``."""
    unsigned, body = canonical_entry(entry)
    return hashlib.sha256(unsigned).digest(), body


def typed_digest(entry: Entry) -> tuple[bytes, bytes, Body | None]:
    """``canonical_digest`` and the entry's typed body (``agent.entries.readable``,
    None for a body no till of this version writes), read once for HQ's ingest,
    which needs both. The body's generated reader writes its canonical text as it
    reads (``agent.entries.text_reader``: ints and texts it checked, a ``result``
    walked for floats and encoded); a body it does not take goes through
    ``canonical_entry`` and ``readable`` as before. The same verdict and bytes as
    ``canonical_digest`` (tests/test_chain_typed_digest.py)."""
    read = text_reader(entry.kind, _TEXTS)
    if read is not None:
        try:
            typed, text = read(entry.body)
        except (Refused, TypeError, ValueError):
            pass  # the slow path below gives the verdict
        else:
            body = text.encode("utf-8")
            return hashlib.sha256(b'{"body":' + body + _fields(entry)).digest(), body, typed
    unsigned, body = canonical_entry(entry)
    return hashlib.sha256(unsigned).digest(), body, readable(entry.kind, entry.body)


def stored_digest(entry: Entry, body: bytes) -> bytes:
    """The digest of ``entry`` with ``body`` as its canonical body bytes, as
    ``canonical_entry`` splices them (``entry.body`` is not read)."""
    return hashlib.sha256(b'{"body":' + body + _fields(entry)).digest()


_text = json.encoder.encode_basestring  # the escaping of json.dumps(ensure_ascii=False)


def _fields(entry: Entry) -> bytes:
    """``canonical(entry.unsigned())`` after its body: ``,"device":...,"v":N}``."""
    device, seq, ts, kind, staff, prev = (
        entry.device,
        entry.seq,
        entry.ts,
        entry.kind,
        entry.staff,
        entry.prev,
    )
    # A kind may be an ``agent.entries.Kind``: a ``str`` whose text is its value.
    if not (
        type(seq) is int
        and type(device) is str
        and type(ts) is str
        and isinstance(kind, str)
        and type(prev) is str
    ):
        raise TypeError("entry field of the wrong type")
    text = (
        f',"device":{_text(device)},"kind":{_text(kind)},"prev":{_text(prev)},"seq":{seq},'
        f'"staff":{"null" if staff is None else _text(staff)},"ts":{_text(ts)},'
        f'"v":{FORMAT_VERSION}}}'
    )
    return text.encode("utf-8")


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


def _json_text(value: Any) -> str:
    """Any JSON value's canonical text (``canonical`` without the float walk)."""
    if _C_ENCODER is None:
        text: str = _ENCODER.encode(value)
        return text
    return "".join(_C_ENCODER(value, 0))


def _loose_text(value: Any) -> str:
    """A loose value's canonical text (a body's ``result``): ``canonical`` as text,
    raising its TypeError for a float."""
    _floatless(value)
    return _json_text(value)


# What the typed readers write a dict of ints and a loose value with.
_TEXTS = (_json_text, _loose_text)
