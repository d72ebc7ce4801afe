"""``lookup --phone`` for a member of another store: asked of HQ, online.

A till holds phone keys of its own store's members only (``sync.hq.extract``), so a
member of another store who forgot their card is looked up at HQ: the till sends
the phone key it computed under the chain's pepper (never the number), signed
with its transport key like every sync request, and takes HQ's answer only once
HQ's signature verifies against the key pinned at registration. HQ counts the
lookups of each till (``sync.hq.directory.LOOKUPS_PER_HOUR``) and records them.
One attempt, short timeouts: a cashier is waiting. An unregistered till, or one
that cannot reach HQ, answers ``None`` and the caller says to use the card.
"""

from __future__ import annotations

from pathlib import Path

from agent.keys import load_public_key
from agent.results import Found
from agent.store import Store
from sync.client import HQClient, RetryPolicy, Signer
from sync.errors import SyncError, unverified
from sync.protocol import LOOKUP_TAG, open_signed
from sync.till_register import error_from, transport_key

COUNTER_WAIT = RetryPolicy(attempts=1, connect_timeout_s=2.0, read_timeout_s=5.0)
_LOCAL_STATUS = {2: 400, 3: 409, 4: 422}


def lookup_at_hq(state_dir: Path, store: Store, phone_key: str) -> Found | None:
    device, pinned, url = (store.meta(k) for k in ("device_id", "hq_public_key", "hq_url"))
    if not device or not pinned or not url:
        return None
    remembered = store.meta("hq_ca")
    try:
        client = HQClient(
            url,
            ca=Path(remembered) if remembered else None,
            signer=Signer(device, transport_key(state_dir)),
            policy=COUNTER_WAIT,
        )
        try:
            reply = client.post(f"/v1/devices/{device}/phone-lookup", {"phone_key": phone_key})
        finally:
            client.close()
    except SyncError as error:
        if error.code in ("hq_unreachable", "tls_error", "invalid_ca"):
            return None
        raise
    if reply.status == 404 and reply.body.get("error") == "unknown_phone":
        return None
    if reply.status != 200:
        # Answered on the local API as a till's own refusal would be (409 for
        # rate_limited), not with HQ's status: the POS did nothing unauthorised.
        answered = error_from(reply.status, reply.body)
        answered.http_status = _LOCAL_STATUS.get(answered.exit_status, 502)
        raise answered
    answer = open_signed(load_public_key(pinned), LOOKUP_TAG, reply.body, "phone lookup")
    if answer.get("device") != device or answer.get("phone_key") != phone_key:
        raise unverified("bad_lookup", "HQ's phone lookup answers another question")
    return Found(
        member_id=answer.get("member_id"),
        name=answer.get("name"),
        card=answer.get("card"),
    )
