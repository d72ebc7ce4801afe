"""HQ's side of device identity: its own key, tokens, registration, freezing.

HQ's Ed25519 key is created by ``hq init`` in a 0600 file of its own, never in
the database (``sync.hq.keyfile``); every worker process loads it once. Tokens are
stored hashed. The chain's phone pepper is derived from the key (``chain_phone``)
and handed to each till in its signed registration answer. Every request from a
till is signed with the transport key registered here (``sync.protocol``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.chain import GENESIS_PREV
from agent.fields import PHONE_COST
from agent.keys import device_id_for, load_public_key, public_key_text
from sync.errors import invalid, refused, unverified
from sync.hq.db import HQStore, Tx
from sync.hq.keyfile import create_key, load_key, read_qr_secret
from sync.protocol import (
    RECEIPT_TAG,
    REGISTER_FIELDS,
    registration_challenge,
    request_message,
    signed,
    utc_text,
)
from sync.registration import (
    TOKEN_TTL,
    Event,
    State,
    new_token,
    token_digest,
    token_state,
    transition,
)

# A till's request clock may be this far from HQ's and still be accepted; skew
# beyond five minutes is *reported* (an alert), not refused, so a till with a
# wrong clock can still deliver its journal.
REQUEST_WINDOW = dt.timedelta(hours=24)


def init_hq(store: HQStore, phone_cost: int | None = None) -> str:
    """Create HQ's signing key once (a second call keeps the first) and record the
    chain's phone cost (``phone_cost``: a new value, else the first or the default);
    returns the public key."""
    key = create_key(store)
    with store.write() as tx:
        if phone_cost is not None:
            tx.run(
                "INSERT INTO hq_meta (key, value) VALUES ('phone_cost', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(phone_cost),),
            )
        tx.run(
            "INSERT INTO hq_meta (key, value) VALUES ('phone_cost', ?) ON CONFLICT DO NOTHING",
            (str(PHONE_COST),),
        )
    return public_key_text(key.public_key())


def hq_key(store: HQStore) -> Ed25519PrivateKey:
    """HQ's signing key, from its file (``sync.hq.keyfile``)."""
    return load_key(store)


# Ed25519 signatures are deterministic (RFC 8032): signing this label always gives
# the same bytes, which only the holder of HQ's key (a file or an HSM) can make.
PEPPER_LABEL = b"tillpoints chain phone pepper v1"


def chain_phone(store: HQStore, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The chain's phone pepper and scrypt cost as a till receives them at
    registration (``agent.till_secrets``). The pepper is derived from HQ's key, so
    it is stored nowhere: not in a table the reports read, not beside the key."""
    with store.read() as tx:
        row = tx.one("SELECT value FROM hq_meta WHERE key = 'phone_cost'")
    pepper = hashlib.sha256(key.sign(PEPPER_LABEL)).digest()
    return {
        "pepper": base64.b64encode(pepper).decode("ascii"),
        "cost": int(row[0]) if row else PHONE_COST,
    }


QR_LABEL = b"tillpoints chain qr secret v1"


def chain_qr(store: HQStore, key: Ed25519PrivateKey) -> str:
    """The chain's QR secret (``drivers.codes``) as a till receives it at
    registration, base64: the one an operator gave ``hq init --qr-secret-file`` if
    the chain already issued codes under it (kept 0600 beside HQ's key,
    ``sync.hq.keyfile.qr_secret_path``), else derived from HQ's key like the
    phone pepper, under its own label."""
    given = read_qr_secret(store, key)
    secret = given if given is not None else hashlib.sha256(key.sign(QR_LABEL)).digest()
    return base64.b64encode(secret).decode("ascii")


def add_device(
    store: HQStore, store_id: str, till: str, now: dt.datetime, ttl: dt.timedelta = TOKEN_TTL
) -> dict[str, Any]:
    token = new_token()
    expires = now + ttl
    with store.write() as tx:
        tx.run(
            "INSERT INTO tokens (token_hash, store, till, issued_at, expires_at, state) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token_digest(token), store_id, till, utc_text(now), utc_text(expires), "issued"),
        )
    return {"token": token, "store": store_id, "till": till, "expires_at": utc_text(expires)}


def register(
    store: HQStore, key: Ed25519PrivateKey, request: Any, now: dt.datetime
) -> dict[str, Any]:
    """Redeem a token: bind the device's keys to the token's (store, till) once."""
    fields = _register_fields(request)
    public = _public_key(fields["public_key"], "public_key")
    transport = _public_key(fields["transport_key"], "transport_key")
    if device_id_for(public) != fields["device"]:
        raise invalid("device_mismatch", "device: is not the id of public_key")
    challenge = registration_challenge(
        fields["token"],
        fields["device"],
        fields["store"],
        fields["till"],
        fields["public_key"],
        fields["transport_key"],
    )
    for name, holder in (("proof", public), ("transport_proof", transport)):
        try:
            holder.verify(bytes.fromhex(fields[name]), challenge)
        except (InvalidSignature, ValueError):
            raise unverified(
                "bad_proof", f"{name}: does not prove the key", http_status=401
            ) from None
    with store.write() as tx:
        row = tx.locked(
            "SELECT store, till, expires_at, state FROM tokens WHERE token_hash = ?",
            (token_digest(fields["token"]),),
        )
        if row is None:
            raise refused("unknown_token", "token: HQ never issued it", http_status=403)
        state = token_state(str(row[3]), dt.datetime.fromisoformat(str(row[2])), now)
        bound = transition(transition(state, Event.REDEEM), Event.BIND)
        if (row[0], row[1]) != (fields["store"], fields["till"]):
            raise refused(
                "token_mismatch",
                f"token: issued for {row[0]}/{row[1]}, not {fields['store']}/{fields['till']}",
                http_status=403,
            )
        if tx.one("SELECT 1 FROM devices WHERE device = ?", (fields["device"],)):
            raise refused("device_registered", "device: already registered; start a new chain")
        tx.run(
            "UPDATE tokens SET state = ?, device = ? WHERE token_hash = ?",
            (State.USED.value, fields["device"], token_digest(fields["token"])),
        )
        block = _next_ecard_block(tx)
        tx.run(
            "INSERT INTO devices (device, store, till, public_key, current_key, transport_key, "
            "state, head_seq, head_hash, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                fields["device"],
                fields["store"],
                fields["till"],
                fields["public_key"],
                fields["public_key"],
                fields["transport_key"],
                bound.value,
                GENESIS_PREV,
                utc_text(now),
            ),
        )
    receipt = {
        "device": fields["device"],
        "store": fields["store"],
        "till": fields["till"],
        "hq_public_key": public_key_text(key.public_key()),
        "registered_at": utc_text(now),
        "ecard_block": block,
        "phone": chain_phone(store, key),
        "qr_secret": chain_qr(store, key),
    }
    return signed(key, RECEIPT_TAG, receipt)


# E-card numbers are unique across the chain only if each till issues them from its
# own block: HQ hands out blocks 1..ECARD_BLOCKS in registration order (a counter row
# locked FOR UPDATE, so two workers never give out the same block). A till that has
# not registered yet uses the upper half, derived from its device id.
ECARD_BLOCKS = 49_999


def _next_ecard_block(tx: Any) -> int:
    tx.run("INSERT INTO hq_meta (key, value) VALUES ('ecard_blocks', '0') ON CONFLICT DO NOTHING")
    row = tx.locked("SELECT value FROM hq_meta WHERE key = 'ecard_blocks'")
    block = int(row[0]) + 1 if row else 1
    if block > ECARD_BLOCKS:
        raise refused("ecard_blocks_exhausted", "register: every e-card block is taken")
    tx.run("UPDATE hq_meta SET value = ? WHERE key = 'ecard_blocks'", (str(block),))
    return block


def _register_fields(request: Any) -> dict[str, str]:
    if not isinstance(request, dict):
        raise invalid("malformed_request", "register: the body is a JSON object")
    fields: dict[str, str] = {}
    for name in REGISTER_FIELDS:
        value = request.get(name)
        if not isinstance(value, str) or not value or len(value) > 512:
            raise invalid(f"invalid_{name}", f"{name}: a non-empty string is required")
        fields[name] = value
    return fields


def _public_key(text: str, name: str) -> Ed25519PublicKey:
    try:
        return load_public_key(text)
    except ValueError:
        raise invalid(f"invalid_{name}", f"{name}: not a base64 Ed25519 public key") from None


@dataclass(frozen=True)
class Caller:
    """An authenticated till: who it is and what its own clock said."""

    device: str
    store: str
    till: str
    state: State
    till_clock: dt.datetime


def authenticate(
    store: HQStore,
    headers: dict[str, str | None],
    method: str,
    target: str,
    body: bytes,
    now: dt.datetime,
) -> Caller:
    """Check a request's transport signature (``sync.protocol.sign_request``)."""
    device, date, signature = (
        headers.get("device"),
        headers.get("date"),
        headers.get("signature"),
    )
    if not device or not date or not signature:
        raise unverified(
            "unauthenticated", "sign the request with the transport key", http_status=401
        )
    with store.read() as tx:
        row = tx.one(
            "SELECT store, till, state, transport_key FROM devices WHERE device = ?", (device,)
        )
    if row is None:
        raise unverified("unknown_device", f"device {device!r} is not registered", http_status=401)
    try:
        load_public_key(str(row[3])).verify(
            bytes.fromhex(signature), request_message(method, target, date, body)
        )
    except (InvalidSignature, ValueError):
        raise unverified(
            "bad_request_signature", "request signature does not verify", http_status=401
        ) from None
    try:
        clock = dt.datetime.fromisoformat(date)
    except ValueError:
        clock = None
    if clock is None or clock.tzinfo is None or abs(now - clock) > REQUEST_WINDOW:
        raise unverified("stale_request", "request date is missing or a day off", http_status=401)
    return Caller(device, str(row[0]), str(row[1]), State(str(row[2])), clock)


def raise_alert(
    tx: Tx, kind: str, device: str | None, detail: dict[str, Any], dedupe: str, now: dt.datetime
) -> None:
    """Record an alert once (``dedupe`` is unique): a retried upload adds none."""
    tx.run(
        "INSERT INTO alerts (kind, device, detail, dedupe, raised_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (dedupe) DO NOTHING",
        (kind, device, json.dumps(detail, sort_keys=True), dedupe, utc_text(now)),
    )


def freeze(
    store: HQStore, device: str, kind: str, detail: dict[str, Any], now: dt.datetime
) -> None:
    """Freeze a device and raise the alert that says why, in one transaction."""
    with store.write() as tx:
        row = tx.locked("SELECT state FROM devices WHERE device = ?", (device,))
        if row is None:
            return
        frozen = transition(State(str(row[0])), Event.FREEZE)
        tx.run(
            "UPDATE devices SET state = ?, frozen_reason = ? WHERE device = ?",
            (frozen.value, detail.get("reason", kind), device),
        )
        raise_alert(tx, kind, device, detail, f"{kind}:{device}:{detail.get('seq')}", now)


def unfreeze(store: HQStore, device: str) -> dict[str, Any]:
    with store.write() as tx:
        return unfreeze_in(tx, device)


def unfreeze_in(tx: Tx, device: str) -> dict[str, Any]:
    """Unfreeze inside the caller's transaction (the console audits in the same one)."""
    row = tx.locked("SELECT state FROM devices WHERE device = ?", (device,))
    if row is None:
        raise refused("unknown_device", f"device {device!r} is not registered", http_status=404)
    bound = transition(State(str(row[0])), Event.UNFREEZE)
    tx.run(
        "UPDATE devices SET state = ?, frozen_reason = NULL WHERE device = ?",
        (bound.value, device),
    )
    return {"device": device, "state": bound.value}


_SOFTWARE = re.compile(r"tillpoints/[0-9A-Za-z.+-]{1,32}", re.ASCII)


def seen(store: HQStore, device: str, now: dt.datetime, user_agent: str | None) -> None:
    """Note when a till last asked for its delta (``hq devices``: last sync) and the
    software it said it runs (its ``User-Agent``, ``tillpoints/VERSION``; anything
    else is not recorded)."""
    software = user_agent if user_agent and _SOFTWARE.fullmatch(user_agent) else None
    with store.write() as tx:
        tx.run(
            "UPDATE devices SET last_seen_at = ?, software = COALESCE(?, software) "
            "WHERE device = ?",
            (utc_text(now), software, device),
        )
