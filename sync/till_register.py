"""``tillpoints register``: bind this till's keys to its store and till at HQ.

The till creates a *transport* key (``transport.key``, 0600) beside its journal
key, proves to HQ that it holds both (each signs a challenge containing the
one-time token, so a proof cannot be replayed with another token), and pins the
public key HQ answers with: every ack and delta from then on must verify against
it. The journal key is read here once, for the proof; ``sync`` never needs it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.keys import load_public_key, public_key_text, read_private_key, write_private_key
from agent.store import Store
from agent.till_secrets import adopt_chain, parse_phone, parse_qr
from sync.client import HQClient, Reply, Signer, check_url
from sync.errors import SyncError, refused, unverified
from sync.protocol import RECEIPT_TAG, open_signed, registration_challenge, utc_text

DB_FILE, KEY_FILE, TRANSPORT_KEY_FILE = "ledger.db", "device.key", "transport.key"


def transport_key(state_dir: Path) -> Ed25519PrivateKey:
    """The till's transport key, created (0600) on first use."""
    path = state_dir / TRANSPORT_KEY_FILE
    if not path.exists():
        write_private_key(path, Ed25519PrivateKey.generate())
    return read_private_key(path)


def open_till(state_dir: Path) -> Store:
    if not (state_dir / DB_FILE).exists():
        raise SyncError("not_initialised", f"no till ledger in {state_dir}: run `tillpoints init`")
    return Store(state_dir / DB_FILE)


def registration_request(
    state_dir: Path, token: str, device: str, store_id: str, till: str
) -> dict[str, str]:
    """The body of ``POST /v1/register``: both public keys, each proven by a
    signature over the challenge (``sync.protocol.registration_challenge``)."""
    journal_key = read_private_key(state_dir / KEY_FILE)
    return proven_request(journal_key, transport_key(state_dir), token, device, store_id, till)


def proven_request(
    journal_key: Ed25519PrivateKey,
    transport: Ed25519PrivateKey,
    token: str,
    device: str,
    store_id: str,
    till: str,
) -> dict[str, str]:
    """``registration_request`` from the keys themselves (a till held in memory by
    ``tillpoints.bench_night`` registers the same way)."""
    public = public_key_text(journal_key.public_key())
    transport_public = public_key_text(transport.public_key())
    challenge = registration_challenge(token, device, store_id, till, public, transport_public)
    return {
        "token": token,
        "device": device,
        "store": store_id,
        "till": till,
        "public_key": public,
        "transport_key": transport_public,
        "proof": journal_key.sign(challenge).hex(),
        "transport_proof": transport.sign(challenge).hex(),
    }


def register_till(
    state_dir: Path, hq_url: str, token: str, ca: Path | None = None
) -> dict[str, Any]:
    url = check_url(hq_url)
    store = open_till(state_dir)
    try:
        if store.meta("hq_public_key"):
            raise refused(
                "already_registered",
                "this till is registered; a new registration needs a new chain (docs/sync.md)",
            )
        device, store_id, till = (store.meta(k) or "" for k in ("device_id", "store", "till"))
        request = registration_request(state_dir, token, device, store_id, till)
        client = HQClient(url, ca=ca, signer=Signer(device, transport_key(state_dir)))
        try:
            reply = client.post("/v1/register", request)
        finally:
            client.close()
        document, hq_text = opened_receipt(reply, device, store_id, till)
        adopt_phone(state_dir, store, document)
        with store.transaction() as conn:
            store.set_meta(conn, "hq_public_key", str(hq_text))
            store.set_meta(conn, "hq_url", url)
            if ca is not None:
                store.set_meta(conn, "hq_ca", str(ca.resolve()))
            block = document.get("ecard_block")
            if isinstance(block, int) and not isinstance(block, bool) and block > 0:
                # E-cards issued from now on come from HQ's block for this till.
                store.set_meta(conn, "ecard_block", str(block))
            conn.execute(
                "INSERT INTO sync_state VALUES ('registered_at', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (utc_text(dt.datetime.now(dt.UTC)),),
            )
        return {"store": store_id, "till": till, "hq": url, "device_id": device}
    finally:
        store.close()


def opened_receipt(
    reply: Reply, device: str, store_id: str, till: str
) -> tuple[dict[str, Any], str]:
    """HQ's answer to ``POST /v1/register``: its receipt, verified against the key
    it names and checked to name this till, and that key's text (the till pins it)."""
    if reply.status != 200:
        raise error_from(reply.status, reply.body)
    receipt = reply.body.get("document")
    hq_text = receipt.get("hq_public_key") if isinstance(receipt, dict) else None
    try:
        hq_public = load_public_key(str(hq_text))
    except ValueError:
        raise unverified("bad_hq_signature", "register: HQ sent no valid key") from None
    document = open_signed(hq_public, RECEIPT_TAG, reply.body, "registration")
    if (document.get("device"), document.get("store"), document.get("till")) != (
        device,
        store_id,
        till,
    ):
        raise unverified("bad_receipt", "register: HQ's receipt names another till")
    return document, str(hq_text)


def adopt_phone(state_dir: Path, store: Store, receipt: dict[str, Any]) -> None:
    """Keep the chain's phone pepper and cost, and its QR secret, from HQ's verified
    registration answer in the till's secrets file (``agent.till_secrets``); the
    till's own pepper stays after it if members were enrolled under it. An HQ that
    sends none leaves the till's own pepper in place (and no QR secret)."""
    phone, qr = receipt.get("phone"), receipt.get("qr_secret")
    if phone is None and qr is None:
        return
    try:
        chain = None if phone is None else parse_phone(phone, "phone")
        secret = None if qr is None else parse_qr(qr, "qr_secret")
    except ValueError as error:
        raise unverified("bad_receipt", f"register: HQ's {error}") from None
    try:
        adopt_chain(state_dir, chain, keep_own=store.has_members(), qr=secret)
    except OSError as error:
        raise SyncError("storage_error", f"cannot write {state_dir}'s secrets: {error}") from None


# Exit statuses for HQ's HTTP answers (docs/contract.md): 4xx refusals are exit 3,
# malformed input 2, verification failures 4.
_EXIT_FOR_STATUS = {400: 2, 413: 2, 415: 2, 401: 4, 422: 4, 403: 3, 404: 3, 409: 3, 410: 3, 429: 3}


def error_from(status: int, body: dict[str, Any]) -> SyncError:
    code = str(body.get("error") or f"http_{status}")
    message = str(body.get("message") or f"HQ answered {status}")
    details = {k: v for k, v in body.items() if k not in ("error", "message")}
    return SyncError(
        code,
        f"HQ: {message}",
        exit_status=_EXIT_FOR_STATUS.get(status, 1),
        http_status=status,
        details=details,
    )
