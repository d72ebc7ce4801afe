"""HQ ingest on both storage backends, in-process: exactly once, forks, tampering.

The HTTP layer is a thin shell over ``sync.hq.ingest.ingest``; these tests drive
that function directly against real SQLite and PostgreSQL databases. The same
cases over real HTTP are in test_hq_http.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sync.errors import SyncError
from sync.hq.audit import verify_all
from sync.hq.db import HQStore
from sync.hq.devices import hq_key, unfreeze
from sync.hq.ingest import ingest
from sync.hq.projection import alerts, balance
from sync.protocol import ACK_TAG, Ack, open_signed
from tests import sync_helpers
from tests.sync_helpers import (
    batch_of,
    bind,
    busy_till,
    entries_of,
    hq_count,
    hq_points,
    journal_points,
    make_till,
    utc_now,
)

# Fixtures shared with the other sync tests (tests/sync_helpers.py).
db_url = sync_helpers.db_url
hq_store = sync_helpers.hq_store
pg_database = sync_helpers.pg_database


def _ingest(hq: HQStore, device: str, entries: list) -> Ack:  # type: ignore[type-arg]
    key = hq_key(hq)
    message = ingest(hq, key, device, batch_of(entries), utc_now(), utc_now())
    return Ack.from_json(open_signed(key.public_key(), ACK_TAG, message, "ack"))


def _clone(state: Path, target: Path) -> Path:
    """A byte-for-byte copy of a till: same key, same journal (a cloned disk)."""
    target.mkdir()
    for name in ("ledger.db", "device.key", "rules.toml"):
        (target / name).write_bytes((state / name).read_bytes())
    return target


@pytest.fixture
def till(tmp_path: Path, hq_store: HQStore) -> tuple[Path, str]:
    state = make_till(tmp_path, "till")
    busy_till(state, 6)
    return state, bind(hq_store, state)


def test_same_batch_twice_and_overlaps_are_stored_once(
    hq_store: HQStore, till: tuple[Path, str]
) -> None:
    state, device = till
    entries = entries_of(state)
    first = _ingest(hq_store, device, entries[:5])
    assert (first.head_seq, first.stored) == (5, 5)
    again = _ingest(hq_store, device, entries[:5])
    assert (again.head_seq, again.stored) == (5, 0)
    overlap = _ingest(hq_store, device, entries[3:])
    assert (overlap.head_seq, overlap.stored) == (len(entries), len(entries) - 5)
    assert hq_count(hq_store) == (len(entries), len(entries))
    assert hq_points(hq_store) == journal_points(state)
    assert verify_all(hq_store) == {"ok": True, "devices": 1, "entries": len(entries)}


def test_a_batch_past_the_head_names_the_expected_sequence(
    hq_store: HQStore, till: tuple[Path, str]
) -> None:
    state, device = till
    entries = entries_of(state)
    _ingest(hq_store, device, entries[:2])
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, device, entries[4:])
    assert caught.value.code == "expected_seq"
    assert caught.value.http_status == 409
    assert caught.value.details["expected_seq"] == 3
    assert hq_count(hq_store) == (2, 2)
    # The till resends from there; everything arrives once.
    _ingest(hq_store, device, entries[2:])
    assert hq_count(hq_store) == (len(entries), len(entries))


@pytest.mark.parametrize("field", ["body", "ts", "staff"])
def test_an_edited_entry_is_refused_whole_and_raises_an_alert(
    hq_store: HQStore, till: tuple[Path, str], field: str
) -> None:
    state, device = till
    entries = entries_of(state)
    victim = entries[3]
    changed = {
        "body": {**victim.body, "points": 99_999},
        "ts": "2020-01-01T00:00:00.000+00:00",
        "staff": "mallory",
    }[field]
    entries[3] = dataclasses.replace(victim, **{field: changed})
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, device, entries)
    assert caught.value.exit_status == 4 and caught.value.http_status == 422
    assert hq_count(hq_store) == (0, 0)
    assert [a["kind"] for a in alerts(hq_store)] == ["tampered_upload"]


def test_a_deleted_entry_is_refused(hq_store: HQStore, till: tuple[Path, str]) -> None:
    state, device = till
    entries = entries_of(state)
    del entries[2]
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, device, entries)
    assert caught.value.code == "sequence_gap"
    assert hq_count(hq_store) == (0, 0)
    assert alerts(hq_store)[0]["kind"] == "tampered_upload"


def test_a_cloned_till_that_diverges_is_a_fork_and_freezes_the_device(
    tmp_path: Path, hq_store: HQStore, till: tuple[Path, str]
) -> None:
    state, device = till
    clone = _clone(state, tmp_path / "clone")
    busy_till(state, 2, enrol=False)
    busy_till(clone, 3, enrol=False)
    _ingest(hq_store, device, entries_of(state))
    held = hq_count(hq_store)
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, device, entries_of(clone))
    assert caught.value.code == "fork"
    assert hq_count(hq_store) == held
    assert [a["kind"] for a in alerts(hq_store)] == ["fork"]
    # Frozen: even the genuine till is refused until an operator unfreezes it.
    busy_till(state, 1, enrol=False)
    with pytest.raises(SyncError) as frozen:
        _ingest(hq_store, device, entries_of(state))
    assert (frozen.value.code, frozen.value.http_status) == ("device_frozen", 403)
    assert unfreeze(hq_store, device)["state"] == "bound"
    _ingest(hq_store, device, entries_of(state))
    assert hq_points(hq_store) == journal_points(state)


def test_a_fork_continuing_past_the_head_is_caught_at_the_link(
    tmp_path: Path, hq_store: HQStore, till: tuple[Path, str]
) -> None:
    state, device = till
    clone = _clone(state, tmp_path / "clone")
    busy_till(state, 1, enrol=False)
    busy_till(clone, 2, enrol=False)
    _ingest(hq_store, device, entries_of(state))
    head = len(entries_of(state))
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, device, entries_of(clone)[head:])
    assert caught.value.code == "fork"


def test_one_tills_batch_under_anothers_identity_is_refused(
    tmp_path: Path, hq_store: HQStore, till: tuple[Path, str]
) -> None:
    state, _device = till
    other_state = make_till(tmp_path, "other", till="T02")
    other = bind(hq_store, other_state)
    stolen = entries_of(state)
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, other, stolen)
    assert caught.value.code == "device_mismatch"
    relabelled = [dataclasses.replace(entry, device=other) for entry in stolen]
    with pytest.raises(SyncError) as relabel:
        _ingest(hq_store, other, relabelled)
    assert relabel.value.exit_status == 4
    assert hq_count(hq_store) == (0, 0)


def test_an_unknown_device_is_refused(tmp_path: Path, hq_store: HQStore) -> None:
    state = make_till(tmp_path, "stranger")
    entries = entries_of(state)
    with pytest.raises(SyncError) as caught:
        _ingest(hq_store, entries[0].device, entries)
    assert (caught.value.code, caught.value.http_status) == ("unknown_device", 401)


def test_balances_across_stores_follow_cards_enrolled_elsewhere(
    tmp_path: Path, hq_store: HQStore
) -> None:
    from agent.ledger import Ledger

    home = make_till(tmp_path, "home", store="S001")
    away = make_till(tmp_path, "away", store="S002")
    devices = {state: bind(hq_store, state) for state in (home, away)}
    ledger = Ledger(home)
    enrolled = ledger.enrol(name="Bo", phone="0622222222")
    ledger.close()
    ledger = Ledger(away)
    ledger.earn(enrolled.card, "A1", amount=5000)  # a card this till does not know
    ledger.close()
    for state, device in devices.items():
        _ingest(hq_store, device, entries_of(state))
    expected = journal_points(home, away)
    assert balance(hq_store, enrolled.member_id) == {
        "member_id": enrolled.member_id,
        "balance": expected,
    }
    assert balance(hq_store, enrolled.card)["balance"] == expected


def test_hq_verify_finds_a_row_edited_inside_hq(
    hq_store: HQStore, db_url: str, till: tuple[Path, str]
) -> None:
    from tests.sync_helpers import cli

    state, device = till
    _ingest(hq_store, device, entries_of(state))
    assert cli(None, "hq", "verify", "--db", db_url)[0] == 0
    with hq_store.write() as tx:
        tx.run("UPDATE entries SET staff = 'mallory' WHERE device = ? AND seq = 3", (device,))
    code, answer = cli(None, "hq", "verify", "--db", db_url)
    assert (code, answer["error"], answer["ok"]) == (4, "chain_broken", False)
    assert answer["problems"][0]["first_bad_seq"] == 3
