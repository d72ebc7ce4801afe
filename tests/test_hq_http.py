"""The HQ service over real HTTP on loopback (`tillpoints hq serve` in a
subprocess), with the till's `register` and `sync` commands, on both backends."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.errors import Refused
from agent.ledger import Ledger
from agent.till_view import redeemable, till_view
from sync.client import HQClient, Signer
from sync.hq.db import HQStore
from sync.hq.devices import add_device
from sync.hq.stores import open_store
from sync.till_register import transport_key
from sync.wire import MAX_BODY_BYTES
from tests import sync_helpers
from tests.sync_helpers import (
    HQServer,
    _init,
    cli,
    entries_of,
    hq_count,
    journal_points,
    make_till,
    pg_schema,
    register_till,
    running_hq,
    utc_now,
)

# Fixtures shared with the other sync tests (tests/sync_helpers.py).
pg_database = sync_helpers.pg_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HQServer, HQStore]]:
    root = tmp_path_factory.mktemp("hq")
    with contextlib_for(request, root) as url:
        _init(url)
        store = open_store(url)
        with running_hq(url, root / "hq.log", workers=2) as server:
            yield server, store
        store.close()


def contextlib_for(request: pytest.FixtureRequest, root: Path):  # type: ignore[no-untyped-def]
    import contextlib

    if request.param == "sqlite":
        return contextlib.nullcontext(f"sqlite:///{root}/hq.db")
    return pg_schema(request.getfixturevalue("pg_database"))


_COUNTER = iter(range(10_000))


def _till(tmp_path: Path, store: str = "S001") -> Path:
    return make_till(tmp_path, f"till{next(_COUNTER)}", store=store, till=f"T{next(_COUNTER)}")


def _earn(state: Path, times: int, ref: str | None = None, amount: int = 2500) -> str:
    ledger = Ledger(state)
    try:
        if ref is None:
            ref = ledger.enrol(name="Cy", phone=f"06{next(_COUNTER):08d}").member_id
        for _ in range(times):
            ledger.earn(ref, f"R{next(_COUNTER)}", amount=amount)
        return ref
    finally:
        ledger.close()


def test_register_then_sync_stores_every_entry_once(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    state = _till(tmp_path)
    result = register_till(server, hq, state)
    assert result["hq"] == server.url
    member = _earn(state, 4)
    code, summary = cli(state, "sync")
    assert code == 0, summary
    head = len(entries_of(state))
    assert summary["uploaded"] == head and summary["acked_seq"] == head
    assert summary["downloaded"] > 0
    code, again = cli(state, "sync")
    assert (code, again["uploaded"], again["acked_seq"]) == (0, 0, head)
    device = entries_of(state)[0].device
    assert hq_count(hq, device) == (head, head)
    code, answer = cli(None, "hq", "balance", "--db", server.db_url, "--member", member)
    ledger = Ledger(state)
    assert answer == {"member_id": member, "balance": ledger.balance(member).balance}
    ledger.close()
    code, verified = cli(None, "hq", "verify", "--db", server.db_url)
    assert code == 0 and verified["ok"] is True


def test_tokens_are_one_time_expiring_and_bound_to_the_till(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    first, second = _till(tmp_path), _till(tmp_path)
    ledger = Ledger(first)
    store_id, till = ledger.store_id, ledger.till_id
    ledger.close()
    token = add_device(hq, store_id, till, utc_now())["token"]
    assert cli(first, "register", "--hq", server.url, "--token", token)[0] == 0
    code, reused = cli(second, "register", "--hq", server.url, "--token", token)
    assert (code, reused["error"]) == (3, "token_used")
    expired = add_device(hq, "S001", "T9", utc_now() - dt.timedelta(days=2))["token"]
    code, answer = cli(second, "register", "--hq", server.url, "--token", expired)
    assert (code, answer["error"]) == (3, "token_expired")
    code, answer = cli(second, "register", "--hq", server.url, "--token", "made-up")
    assert (code, answer["error"]) == (3, "unknown_token")
    elsewhere = add_device(hq, "S777", "T1", utc_now())["token"]
    code, answer = cli(second, "register", "--hq", server.url, "--token", elsewhere)
    assert (code, answer["error"]) == (3, "token_mismatch")
    code, answer = cli(first, "register", "--hq", server.url, "--token", "again")
    assert (code, answer["error"]) == (3, "already_registered")


def test_a_key_hq_does_not_know_is_refused(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    known = _till(tmp_path)
    register_till(server, hq, known)
    stranger = _till(tmp_path)
    _earn(stranger, 1)
    # The stranger pins HQ's key without registering: HQ still does not know it.
    pinned = Ledger(known).store.meta("hq_public_key") or ""
    ledger = Ledger(stranger)
    with ledger.store.transaction() as conn:
        ledger.store.set_meta(conn, "hq_public_key", pinned)
        ledger.store.set_meta(conn, "hq_url", server.url)
    ledger.close()
    code, answer = cli(stranger, "sync")
    assert (code, answer["error"]) == (4, "unknown_device")
    assert hq_count(hq, entries_of(stranger)[0].device) == (0, 0)


def test_oversized_and_malformed_bodies_get_stable_4xx(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    state = _till(tmp_path)
    register_till(server, hq, state)
    device = entries_of(state)[0].device
    huge = requests.post(f"{server.url}/v1/register", data=b"x" * (MAX_BODY_BYTES + 1), timeout=30)
    assert huge.status_code == 413 and huge.json()["error"] == "body_too_large"
    client = HQClient(server.url, signer=Signer(device, transport_key(state)))
    try:
        bomb = gzip.compress(b"[" * (MAX_BODY_BYTES * 5))
        reply = client.call(
            "POST", f"/v1/devices/{device}/batches", bomb, {"Content-Encoding": "gzip"}
        )
        assert (reply.status, reply.body["error"]) == (413, "body_too_large")
        v1 = {"device": device, "entries": [{**entries_of(state)[0].to_json(), "v": 1}]}
        for body, code in (
            (b"{", "malformed_json"),
            (b'{"device": 1}', "malformed_batch"),
            (json.dumps(v1).encode(), "malformed_entry"),
        ):
            reply = client.call("POST", f"/v1/devices/{device}/batches", body, {})
            assert (reply.status, reply.body["error"]) == (400, code)
        assert "unknown entry format 1" in reply.body["message"]
        reply = client.get("/v1/devices/someone-else/head")
        assert (reply.status, reply.body["error"]) == (403, "device_mismatch")
    finally:
        client.close()
    unsigned = requests.get(f"{server.url}/v1/devices/{device}/head", timeout=10)
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unauthenticated")
    assert requests.get(f"{server.url}/v1/nowhere", timeout=10).json()["error"] == "not_found"
    assert hq_count(hq, device) == (0, 0)


def test_a_till_restored_from_backup_refuses_to_fork(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    state = _till(tmp_path)
    register_till(server, hq, state)
    member = _earn(state, 2)
    backup = tmp_path / "backup"
    shutil.copytree(state, backup)
    _earn(state, 2, member)
    assert cli(state, "sync")[0] == 0
    device = entries_of(state)[0].device
    held = hq_count(hq, device)
    shutil.rmtree(state)
    shutil.copytree(backup, state)
    code, answer = cli(state, "sync")  # behind HQ
    assert (code, answer["error"]) == (3, "restored_from_backup")
    # It remembers: no different history past the backup point can be started.
    with pytest.raises(Refused) as refused:
        _earn(state, 3, member)
    assert refused.value.code == "till_restored_from_backup"
    code, answer = cli(state, "sync")
    assert (code, answer["error"]) == (3, "restored_from_backup")
    assert "new chain" in answer["message"] and answer["fork_reported"] is True
    assert hq_count(hq, device) == held
    code, found = cli(None, "hq", "alerts", "--db", server.db_url)
    # Told by the till itself (tests/test_sync_guard.py): HQ froze the device.
    assert [a["device"] for a in found["alerts"] if a["kind"] == "fork"] == [device]


def test_download_gives_balances_the_till_view_builds_on(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    home, away = _till(tmp_path, "S001"), _till(tmp_path, "S002")
    for state in (home, away):
        register_till(server, hq, state)
    member = _earn(home, 2)
    ledger = Ledger(home)
    card = ledger.store.conn.execute(
        "SELECT card FROM cards WHERE account = ?", (member,)
    ).fetchone()[0]
    ledger.close()
    assert cli(home, "sync")[0] == 0
    assert cli(away, "sync")[0] == 0
    ledger = Ledger(away)
    conn, device = ledger.store.conn, ledger.device_id
    confirmed = journal_points(home)
    assert till_view(conn, member, device) == confirmed
    assert conn.execute("SELECT name FROM hq_members WHERE member_id = ?", (member,)).fetchone()
    ledger.earn(card, "AWAY-1", amount=10_000)  # offline at the other store
    mine = journal_points(away)
    assert till_view(conn, "C" + card, device) == confirmed + mine
    assert till_view(conn, member, device) == confirmed + mine
    later = utc_now() + dt.timedelta(hours=100)
    assert redeemable(conn, member, device, offline_cap=50, offline_after_hours=48, now=later) == 50
    ledger.close()
    assert cli(away, "sync")[0] == 0
    ledger = Ledger(away)
    # Synced: HQ now counts the away till's entries; nothing is counted twice.
    assert till_view(ledger.store.conn, member, device) == confirmed + mine
    ledger.close()
    _code, answer = cli(None, "hq", "balance", "--db", server.db_url, "--member", member)
    assert answer["balance"] == confirmed + mine == hq_points_for(hq, home, away)


def hq_points_for(hq: HQStore, *states: Path) -> int:
    return journal_points(*states)


def test_alerts_for_duplicates_negative_balances_and_clock_skew(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    one, two = _till(tmp_path, "S010"), _till(tmp_path, "S011")
    for state in (one, two):
        register_till(server, hq, state)
    phone = f"07{next(_COUNTER):08d}"
    for state in (one, two):
        ledger = Ledger(state)
        ledger.enrol(name="Dup", phone=phone)
        ledger.close()
    ledger = Ledger(one)
    member = ledger.enrol(name="Neg", phone=f"07{next(_COUNTER):08d}").member_id
    ledger.earn(member, "N1", amount=100_000)
    ledger.redeem(member, "N2", ledger.balance(member).balance)
    refund = ledger.refund("N1")
    assert refund.negative is True
    ledger.close()
    for state in (one, two):
        assert cli(state, "sync")[0] == 0
    # A till whose clock is an hour fast: its upload is stored, and reported.
    skewed = _till(tmp_path, "S012")
    register_till(server, hq, skewed)
    device = entries_of(skewed)[0].device
    fast = HQClient(
        server.url,
        signer=Signer(device, transport_key(skewed)),
        clock=lambda: utc_now() + dt.timedelta(hours=1),
    )
    body = {"device": device, "entries": [e.to_json() for e in entries_of(skewed)]}
    assert fast.post(f"/v1/devices/{device}/batches", body).status == 200
    fast.close()
    _code, found = cli(None, "hq", "alerts", "--db", server.db_url)
    kinds = {a["kind"] for a in found["alerts"]}
    assert {"duplicate_enrolment", "negative_balance", "clock_skew"} <= kinds
    negative = [a for a in found["alerts"] if a["kind"] == "negative_balance"]
    assert member in {a["member_id"] for a in negative}
