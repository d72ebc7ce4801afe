"""The sync protocol's messages and signatures: pure, no sockets, no database.

Every message HQ sends down (an upload acknowledgement, a directory delta, a
registration receipt) is canonical JSON (``agent.chain.canonical``) signed with
HQ's Ed25519 key (RFC 8032). Each kind of message has its own domain-separation
tag, so that a signature made for one kind can never be passed off as another
(the same reason ``agent.chain`` tags entry signatures).

Requests from a till are signed with its *transport* key (a second Ed25519 key,
registered alongside the journal key): the network process never needs the key
that signs journal entries; entries arrive already signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.chain import Entry, canonical
from sync.errors import invalid, unverified

ACK_TAG = b"tillpoints-ack-v1\x00"
DELTA_TAG = b"tillpoints-delta-v1\x00"
RECEIPT_TAG = b"tillpoints-registration-v1\x00"
REQUEST_TAG = b"tillpoints-request-v1\x00"
CHALLENGE_TAG = b"tillpoints-register-challenge-v1\x00"
HEAD_TAG = b"tillpoints-head-v1\x00"
LOOKUP_TAG = b"tillpoints-phone-lookup-v1\x00"

# Header names of a signed request (the device and the till's own clock).
DEVICE_HEADER = "Tillpoints-Device"
DATE_HEADER = "Tillpoints-Date"
SIGNATURE_HEADER = "Tillpoints-Signature"


def sign_document(key: Ed25519PrivateKey, tag: bytes, document: dict[str, Any]) -> str:
    return key.sign(tag + canonical(document)).hex()


def verify_document(
    key: Ed25519PublicKey, tag: bytes, document: dict[str, Any], signature: str
) -> bool:
    try:
        key.verify(bytes.fromhex(signature), tag + canonical(document))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def signed(key: Ed25519PrivateKey, tag: bytes, document: dict[str, Any]) -> dict[str, Any]:
    """The wire form of a signed message: ``{"document": ..., "sig": hex}``."""
    return {"document": document, "sig": sign_document(key, tag, document)}


def open_signed(key: Ed25519PublicKey, tag: bytes, message: Any, what: str) -> dict[str, Any]:
    """Return the document of a signed message, or raise ``bad_hq_signature``.

    The till applies nothing HQ sent until this passes."""
    if not isinstance(message, dict) or not isinstance(message.get("document"), dict):
        raise unverified("bad_hq_signature", f"{what}: not a signed HQ message")
    document: dict[str, Any] = message["document"]
    signature = message.get("sig")
    if not isinstance(signature, str) or not verify_document(key, tag, document, signature):
        raise unverified("bad_hq_signature", f"{what}: HQ's signature does not verify")
    return document


# -- messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """A run of consecutive journal entries of one device, as uploaded."""

    device: str
    entries: tuple[Entry, ...]
    # The keys of the members the batch's enrolments sealed (agent.privacy): member id
    # -> base64 key, beside the entries, never in them (issue 17).
    member_keys: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "device": self.device,
            "entries": [entry.to_json() for entry in self.entries],
        }
        if self.member_keys:
            document["member_keys"] = dict(self.member_keys)
        return document

    @classmethod
    def from_json(cls, value: Any) -> Batch:
        if (
            not isinstance(value, dict)
            or not {"device", "entries"} <= set(value)
            or not (set(value) <= {"device", "entries", "member_keys"})
        ):
            raise invalid("malformed_batch", "batch: an object with device and entries")
        device, raw = value["device"], value["entries"]
        if not isinstance(device, str) or not isinstance(raw, list) or not raw:
            raise invalid("malformed_batch", "batch: device is a string, entries a non-empty list")
        keys = value.get("member_keys", {})
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
        ):
            raise invalid("malformed_batch", "batch: member_keys maps member ids to keys")
        try:
            entries = tuple(Entry.from_json(item) for item in raw)
        except (ValueError, TypeError) as error:
            raise invalid("malformed_entry", f"batch: {error}") from None
        return cls(device, entries, dict(keys))


@dataclass(frozen=True)
class Ack:
    """HQ's word that it holds ``device``'s chain up to ``head_seq`` / ``head_hash``."""

    device: str
    head_seq: int
    head_hash: str
    stored: int
    hq_time: str

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "stored": self.stored,
            "hq_time": self.hq_time,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Ack:
        try:
            return cls(
                device=str(value["device"]),
                head_seq=int(value["head_seq"]),
                head_hash=str(value["head_hash"]),
                stored=int(value["stored"]),
                hq_time=str(value["hq_time"]),
            )
        except (KeyError, TypeError, ValueError):
            raise unverified("bad_ack", "ack: a field is missing or of the wrong type") from None


# -- request authentication -----------------------------------------------------------


def request_message(method: str, target: str, date: str, body: bytes) -> bytes:
    """What a till's transport key signs: method, path with query, its clock, body hash."""
    digest = hashlib.sha256(body).hexdigest()
    return REQUEST_TAG + f"{method.upper()}\n{target}\n{date}\n{digest}".encode()


def sign_request(
    key: Ed25519PrivateKey, device: str, method: str, target: str, body: bytes, now: dt.datetime
) -> dict[str, str]:
    date = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    signature = key.sign(request_message(method, target, date, body)).hex()
    return {DEVICE_HEADER: device, DATE_HEADER: date, SIGNATURE_HEADER: signature}


# What a till sends to redeem its token (``sync.till_register``, ``sync.hq.devices``).
REGISTER_FIELDS = (
    "token",
    "device",
    "store",
    "till",
    "public_key",
    "transport_key",
    "proof",
    "transport_proof",
)


def registration_challenge(
    token: str, device: str, store: str, till: str, public_key: str, transport_key: str
) -> bytes:
    """What the journal key signs at registration: proof that the till holds it.

    The token is inside, so a proof cannot be replayed with another token."""
    return CHALLENGE_TAG + canonical(
        {
            "token": token,
            "device": device,
            "store": store,
            "till": till,
            "public_key": public_key,
            "transport_key": transport_key,
        }
    )


def utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")
