"""``tillpoints bench --only night``: one night of a chain's tills uploaded to HQ.

A thousand tills close and sync at once: each uploads its night (3,000 entries
after its ``init``) through real HTTP to ``hq serve`` on loopback, which stores
it in PostgreSQL. The figure is the wall time of the upload, from the first
till's request to the last till's acknowledgement; then HQ's tables are counted
(every entry sent is stored once, every device's head is its last entry, no
alert was raised) and ``hq verify`` checks every signature again, timed apart.

What is real: each till's keys, its registration (a token, the proofs, HQ's
signed receipt over ``POST /v1/register``), its entries (``init`` then ``earn``
bodies a till writes, each signed by the till's key and chained), its batches
(``sync.till_sync.entry_text`` and ``batch_text``: the bytes ``tillpoints sync``
sends, gzipped, at most ``BATCH_ENTRIES`` each), its requests (signed with its
transport key by ``sync.client.HQClient``) and its checks of HQ's signed head and
acks (``sync.upload.read_answer``). What is left out is the tills' own work: they
are a thousand machines, not this one, so their nights are signed and compressed
before the clock starts (on every core), and during the upload the tills only
send, so that the figure measures HQ and its database, not this process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.chain import GENESIS_PREV, Entry, sign_draft
from agent.entries import Earn, Init, Kind, Lot, SaleLine
from agent.keys import device_id_for, load_public_key, public_key_text
from sync.client import HQClient, Signer
from sync.errors import SyncError
from sync.hq.audit import verify_all
from sync.hq.db import HQStore
from sync.hq.devices import add_device, init_hq
from sync.hq.stores import open_store
from sync.protocol import HEAD_TAG, open_signed
from sync.till_register import error_from, opened_receipt, proven_request
from sync.till_sync import BATCH_ENTRIES, batch_text, entry_text
from sync.upload import Acked, Behind, Refused, read_answer
from sync.wire import gzip_body
from tillpoints.bench_hq import hq_server, scratch_db

Figure = dict[str, Any]

NIGHT_TILLS = 1_000
NIGHT_ENTRIES = 3_000
TILLS_PER_STORE = 4
# Tills uploading at the same moment: a chain's tills do not all close at the
# same second, and HQ's workers hold 2 x 16 requests; the rest wait their turn.
CONCURRENCY = 100
# Distinct earn bodies a till's night repeats under its own receipt numbers.
MEMBERS_PER_TILL = 200


@dataclass(frozen=True)
class NightTill:
    """One till of the chain: where it stands and its two keys (raw private bytes,
    so that a worker process can sign its night)."""

    store: str
    till: str
    journal_key: bytes
    transport_key: bytes

    @property
    def device(self) -> str:
        return device_id_for(Ed25519PrivateKey.from_private_bytes(self.journal_key).public_key())


@dataclass(frozen=True)
class NightBatch:
    first: int
    last: int
    body: bytes  # gzipped, as it goes on the wire


@dataclass(frozen=True)
class Night:
    device: str
    head_hash: str
    batches: tuple[NightBatch, ...]

    @property
    def entries(self) -> int:
        return sum(batch.last - batch.first + 1 for batch in self.batches)


def chain_tills(count: int) -> list[NightTill]:
    """``count`` tills with fresh keys, four to a store."""

    def raw() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes_raw()

    return [
        NightTill(f"N{n // TILLS_PER_STORE + 1:04d}", f"T{n % TILLS_PER_STORE + 1}", raw(), raw())
        for n in range(count)
    ]


def night_entries(
    till: NightTill, entries: int, evening: dt.datetime
) -> Iterator[tuple[Entry, bytes]]:
    """The till's ``init`` and then ``entries`` earns, from ``evening`` on, signed
    by its key and chained, each with its canonical body bytes. The bodies are a
    till's (``agent.entries``); the earns repeat ``MEMBERS_PER_TILL`` members'
    bodies under their own receipts, so that a night costs its signatures, not
    building dataclasses."""
    key = Ed25519PrivateKey.from_private_bytes(till.journal_key)
    public = public_key_text(key.public_key())
    device = device_id_for(key.public_key())
    day = evening.date().isoformat()
    expires = (evening + dt.timedelta(days=730)).date().isoformat()
    members = [
        Earn(
            account=f"{till.store}-M{n:04d}",
            member_id=f"{till.store}-M{n:04d}",
            card=None,
            receipt="",
            fingerprint="",
            lines=(SaleLine(category="total", qty=1, amount=amount, points=amount // 100),),
            amount=amount,
            points=amount // 100,
            tier="base",
            day=day,
            lot=Lot(spendable_on=day, expires_on=expires),
            effects={"delta": amount // 100, "expired": 0},
        ).to_body()
        for n in range(MEMBERS_PER_TILL)
        for amount in (250 + n * 97 % 9_000,)
    ]
    genesis = Init(store=till.store, till=till.till, device_id=device, public_key=public)
    step = dt.timedelta(hours=4) / max(entries, 1)
    prev = GENESIS_PREV
    for seq in range(1, entries + 2):
        kind, body = (
            (Kind.INIT, genesis.to_body())
            if seq == 1
            else (Kind.EARN, {**members[seq % MEMBERS_PER_TILL], **_receipt(device, seq)})
        )
        ts = (evening + step * seq).isoformat(timespec="milliseconds")
        draft = Entry(device, seq, ts, kind, None, body, prev, hash="", sig="")
        entry, body_bytes = sign_draft(key, draft)
        prev = entry.hash
        yield entry, body_bytes


def _receipt(device: str, seq: int) -> dict[str, str]:
    """An earn's own receipt number and basket fingerprint (a SHA-256, as the till's)."""
    receipt = f"R{seq}"
    return {
        "receipt": receipt,
        "fingerprint": hashlib.sha256(f"{device}:{receipt}".encode()).hexdigest(),
    }


def night_of(till: NightTill, entries: int, evening: dt.datetime) -> Night:
    """The till's night as the batches ``tillpoints sync`` sends, gzipped."""
    batches: list[NightBatch] = []
    items: list[str] = []
    first, head = 1, GENESIS_PREV
    device = till.device
    for entry, body in night_entries(till, entries, evening):
        e = entry
        text = body.decode("utf-8")
        items.append(entry_text(device, e.seq, e.ts, e.kind, e.staff, text, e.prev, e.hash, e.sig))
        head = entry.hash
        if len(items) == BATCH_ENTRIES or entry.seq == entries + 1:
            batches.append(NightBatch(first, entry.seq, gzip_body(batch_text(device, items, {}))))
            items, first = [], entry.seq + 1
    return Night(device, head, tuple(batches))


def build_nights(
    tills: Sequence[NightTill], entries: int, evening: dt.datetime, jobs: int | None = None
) -> list[Night]:
    """Every till's night, signed on every core (``jobs`` processes)."""
    make = partial(night_of, entries=entries, evening=evening)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(tills) == 1:
        return [make(till) for till in tills]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(make, tills, chunksize=max(1, len(tills) // (jobs * 8))))


# -- the chain's side: registration, upload, counts ------------------------------------


def register_tills(store: HQStore, base: str, tills: Sequence[NightTill]) -> Ed25519PublicKey:
    """Each till redeems a token over HTTP, as ``tillpoints register`` does; returns
    HQ's key as the receipts name it (each receipt verified against it)."""
    pinned: str | None = None
    now = dt.datetime.now(dt.UTC)
    for till in tills:
        token = add_device(store, till.store, till.till, now)["token"]
        journal = Ed25519PrivateKey.from_private_bytes(till.journal_key)
        transport = Ed25519PrivateKey.from_private_bytes(till.transport_key)
        device = till.device
        request = proven_request(journal, transport, token, device, till.store, till.till)
        client = HQClient(base, signer=Signer(device, transport))
        try:
            reply = client.post("/v1/register", request)
        finally:
            client.close()
        _, hq_text = opened_receipt(reply, device, till.store, till.till)
        if pinned is not None and hq_text != pinned:
            raise SyncError("bad_receipt", "HQ answered two tills with two keys")
        pinned = hq_text
    if pinned is None:
        raise SyncError("no_tills", "a night needs at least one till")
    return load_public_key(pinned)


def upload_night(base: str, hq_key: Ed25519PublicKey, till: NightTill, night: Night) -> str | None:
    """One till's sync without its download: HQ's signed head, then each batch in
    turn, each answer checked as the till checks it. None, or the error code that
    stopped it (a till stops at its first failure and resends next time)."""
    transport = Ed25519PrivateKey.from_private_bytes(till.transport_key)
    client = HQClient(base, signer=Signer(night.device, transport))
    try:
        reply = client.get(f"/v1/devices/{night.device}/head")
        if reply.status != 200:
            return error_from(reply.status, reply.body).code
        head = open_signed(hq_key, HEAD_TAG, reply.body, "head")
        acked = int(head.get("head_seq", -1))
        target = f"/v1/devices/{night.device}/batches"
        for batch in night.batches:
            if batch.last <= acked:
                continue
            reply = client.post_wire(target, batch.body, gzipped=True)
            answer = read_answer(reply.status, reply.body, hq_key)
            if isinstance(answer, Refused):
                return answer.error.code
            if isinstance(answer, Behind):
                return "expected_seq"
            if not isinstance(answer, Acked) or answer.head_seq < batch.last:
                return "ack_elsewhere"
            # Past this batch when another session of the till stored more meanwhile:
            # resume after HQ's head, as the till's upload machine does.
            acked = answer.head_seq
    except SyncError as error:
        return error.code
    finally:
        client.close()
    return None


def upload_all(
    base: str,
    hq_key: Ed25519PublicKey,
    tills: Sequence[NightTill],
    nights: Sequence[Night],
    concurrency: int = CONCURRENCY,
) -> tuple[float, Counter[str]]:
    """Every till's night at once (``concurrency`` on the wire): (seconds, errors by code)."""
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="till") as pool:
        outcomes = pool.map(partial(upload_night, base, hq_key), tills, nights)
        errors.update(code for code in outcomes if code is not None)
    return time.perf_counter() - started, errors


@dataclass(frozen=True)
class NightCounts:
    """What HQ holds of the night: every entry once, every head at its last entry."""

    stored: int
    distinct: int
    heads: int
    batches: int
    alerts: int


def night_counts(store: HQStore, nights: Sequence[Night]) -> NightCounts:
    heads = {night.device: (night.batches[-1].last, night.head_hash) for night in nights}
    with store.read() as tx:
        row = tx.one("SELECT COUNT(*), COUNT(DISTINCT device || ':' || seq) FROM entries")
        at_head = sum(
            1
            for device, seq, digest in tx.all("SELECT device, head_seq, head_hash FROM devices")
            if heads.get(str(device)) == (int(seq), str(digest))
        )
        batches = tx.one("SELECT COUNT(*) FROM batches")
        alerts = tx.one("SELECT COUNT(*) FROM alerts")
    assert row is not None and batches is not None and alerts is not None
    return NightCounts(int(row[0]), int(row[1]), at_head, int(batches[0]), int(alerts[0]))


@contextlib.contextmanager
def night_hq(
    url: str | None,
    chain: Sequence[NightTill],
    *,
    workers: int = 2,
    progress: Callable[[str], None] = lambda text: None,
) -> Iterator[tuple[HQStore, str, Ed25519PublicKey]]:
    """A fresh HQ (a scratch schema of the PostgreSQL database ``url``, or a
    temporary SQLite file for None) served on loopback by ``hq serve``, with the
    ``chain``'s tills registered: (its store, its URL, its key as the tills pin it)."""
    with tempfile.TemporaryDirectory(prefix="tillpoints-night-") as tmp, scratch_db(url) as db:
        root = Path(tmp)
        key = root / "hq-signing.key"
        store = open_store(db, key)
        try:
            init_hq(store)
            with hq_server(db, root, workers=workers, key=key) as base:
                progress(f"registering {len(chain)} tills over HTTP ...")
                yield store, base, register_tills(store, base, chain)
        finally:
            store.close()


def chain_night(
    tills: int = NIGHT_TILLS,
    entries: int = NIGHT_ENTRIES,
    url: str | None = None,
    *,
    concurrency: int = CONCURRENCY,
    workers: int = 2,
    verify: bool = True,
    progress: Callable[[str], None] = lambda text: None,
) -> dict[str, Figure]:
    """The night's figures: its upload time against the 10-minute target, errors,
    what HQ holds of it, and ``hq verify``'s time over it. ``url``: a PostgreSQL
    database (a scratch schema is made in it and dropped), None for SQLite."""
    chain = chain_tills(tills)
    evening = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=6)
    progress(f"signing {tills} tills' nights of {entries} entries ...")
    started = time.perf_counter()
    nights = build_nights(chain, entries, evening)
    built_s = time.perf_counter() - started
    sent = sum(night.entries for night in nights)
    with night_hq(url, chain, workers=workers, progress=progress) as (store, base, hq_key):
        progress(f"{tills} tills upload {sent} entries ({concurrency} at once) ...")
        upload_s, errors = upload_all(base, hq_key, chain, nights, concurrency)
        counts = night_counts(store, nights)
        checked: dict[str, Any] = {}
        if verify:
            progress(f"hq verify over {counts.stored} entries ...")
            began = time.perf_counter()
            checked = verify_all(store)
            checked["seconds"] = time.perf_counter() - began
    backend = "PostgreSQL" if url and not url.startswith("sqlite") else "SQLite"
    figures: dict[str, Figure] = {
        f"chain_night_{tills}_tills_s": {
            "value": round(upload_s, 2),
            "unit": f"s ({tills} tills x {entries} entries, {concurrency} at once, {backend})",
            "target": 600,
            "entries_per_s": round(sent / upload_s, 1),
            "signing_s": round(built_s, 1),
        },
        "chain_night_errors": {
            "value": sum(errors.values()),
            "unit": f"failed tills of {tills}",
            "codes": dict(errors),
        },
        "chain_night_entries_stored": {
            "value": counts.stored,
            "unit": f"entries at HQ of {sent} sent",
            "duplicates": counts.stored - counts.distinct,
            "heads_at_last_entry": counts.heads,
            "batches": counts.batches,
            "alerts": counts.alerts,
        },
    }
    if verify:
        figures["chain_night_verify_s"] = {
            "value": round(checked["seconds"], 1),
            "unit": f"s (hq verify: ok={checked['ok']}, {checked['entries']} entries)",
            "ok": checked["ok"],
        }
    return figures
