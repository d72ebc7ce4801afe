"""A member's personal fields, sealed so that they can be destroyed (crypto-shredding).

An enrolment's body (``agent.entries.Member``) keeps in the clear only what is not
personal (the member id, consent, when, where and by whom enrolled); the personal
fields (``PERSONAL``: name, phone key, birthday, gender, district, household) go
in ``sealed``: AES-256-GCM under a key of the member's own (32 random bytes), the
member id as associated data. The key is held outside the chain: the till's
``member_keys`` table (migration ``007_privacy``), HQ's ``hq_member_keys``
(``009_privacy``; it travels beside the batch in the upload). The journal's hash
and signature cover the ciphertext, so destroying the key erases the member's
personal data and leaves every chain verifiable (docs/decisions/0007).

Pure: bytes in, bytes out; the tables are the callers'.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.entries import Member
from agent.errors import InvalidInput, LedgerError

PERSONAL = ("name", "phone_key", "birthday", "gender", "district", "household")
KEY_BYTES = 32
_NONCE_BYTES = 12
_VERSION = "v1:"


class SealBroken(LedgerError):
    """A sealed enrolment that its key does not open (a wrong key, altered bytes)."""

    def __init__(self, member_id: str) -> None:
        super().__init__("bad_member_key", f"member {member_id}: the key does not open the seal")


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_text(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def key_from_text(text: Any) -> bytes | None:
    """A key as the upload carries it (base64), or None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        key = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    return key if len(key) == KEY_BYTES else None


def seal(member: Member, key: bytes) -> Member:
    """``member`` with its personal fields sealed under ``key`` and left out of the clear."""
    personal = {name: getattr(member, name) for name in PERSONAL}
    plain = json.dumps(personal, sort_keys=True, separators=(",", ":")).encode("utf-8")
    nonce = os.urandom(_NONCE_BYTES)
    box = AESGCM(key).encrypt(nonce, plain, member.member_id.encode("utf-8"))
    sealed = _VERSION + base64.b64encode(nonce + box).decode("ascii")
    blank: dict[str, Any] = dict.fromkeys(PERSONAL)
    return dataclasses.replace(member, **blank, sealed=sealed)


def disclosed(member: Member, key: bytes | None) -> Member:
    """``member`` with its personal fields as enrolled: from the seal when there is
    one and its key is held, all None when the key was destroyed (erased); a
    clear-text enrolment (written before issue 17) as it is."""
    if member.sealed is None or key is None:
        return member
    text = member.sealed
    try:
        if not text.startswith(_VERSION):
            raise ValueError(text[:3])
        raw = base64.b64decode(text[len(_VERSION) :].encode("ascii"), validate=True)
        plain = AESGCM(key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], member.member_id.encode("utf-8")
        )
        personal = json.loads(plain)
    except (ValueError, InvalidTag, UnicodeError):
        raise SealBroken(member.member_id) from None
    if not isinstance(personal, dict) or set(personal) != set(PERSONAL):
        raise SealBroken(member.member_id)
    return dataclasses.replace(member, **personal)


def personal(member: Member) -> dict[str, Any]:
    """The personal fields of a disclosed member."""
    return {name: getattr(member, name) for name in PERSONAL}


def marketing_flag(text: Any) -> bool:
    """``--marketing yes|no`` (and the local API's ``marketing``): given or withdrawn."""
    if text in ("yes", True):
        return True
    if text in ("no", False):
        return False
    raise InvalidInput("invalid_marketing", "marketing: yes or no")
