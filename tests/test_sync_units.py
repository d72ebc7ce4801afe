"""Pure parts of sync: the registration table, the batch judge, the wire, signed
messages, and key rotation (HQ-side acceptance and the till-side function)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from agent.chain import GENESIS_PREV, Entry, sign_entry
from agent.ledger import Ledger
from agent.rotation import rotate_device_key, verify_rotating
from sync.errors import SyncError
from sync.hq.audit import verify_all
from sync.hq.db import HQStore
from sync.hq.devices import hq_key
from sync.hq.ingest import ingest
from sync.hq.judge import Head, judge
from sync.protocol import ACK_TAG, open_signed, signed
from sync.registration import TRANSITIONS, Event, State, token_state, transition
from sync.wire import MAX_INFLATED_BYTES, decode_json, inflate
from tests import sync_helpers
from tests.sync_helpers import (
    batch_of,
    bind,
    entries_of,
    make_till,
    utc_now,
)

# Fixtures shared with the other sync tests (tests/sync_helpers.py).
db_url = sync_helpers.db_url
hq_store = sync_helpers.hq_store
pg_database = sync_helpers.pg_database

KEY = Ed25519PrivateKey.generate()


def _chain(count: int, key: Ed25519PrivateKey = KEY, device: str = "d1") -> list[Entry]:
    entries, prev = [], GENESIS_PREV
    for seq in range(1, count + 1):
        entry = sign_entry(
            key,
            device=device,
            seq=seq,
            ts="2026-01-01T00:00:00.000+00:00",
            kind="earn",
            staff=None,
            body={"n": seq},
            prev=prev,
        )
        entries.append(entry)
        prev = entry.hash
    return entries


# -- registration ----------------------------------------------------------------------


def test_registration_table_walks_issued_to_frozen_and_back() -> None:
    state = State.ISSUED
    for event in (Event.REDEEM, Event.BIND, Event.FREEZE, Event.UNFREEZE):
        state = transition(state, event)
    assert state is State.BOUND


@pytest.mark.parametrize(
    ("state", "event", "code"),
    [
        (State.USED, Event.REDEEM, "token_used"),
        (State.EXPIRED, Event.REDEEM, "token_expired"),
        (State.FROZEN, Event.UPLOAD, "device_frozen"),
        (State.BOUND, Event.UNFREEZE, "not_frozen"),
        (State.ISSUED, Event.UPLOAD, "invalid_transition"),
    ],
)
def test_illegal_transitions_are_named(state: State, event: Event, code: str) -> None:
    with pytest.raises(SyncError) as caught:
        transition(state, event)
    assert caught.value.code == code and caught.value.exit_status == 3


def test_every_state_is_reachable_from_issued() -> None:
    reached, frontier = {State.ISSUED}, [State.ISSUED]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)


def test_a_token_expires_by_the_clock() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert token_state("issued", now, now) is State.EXPIRED
    assert token_state("issued", now + dt.timedelta(seconds=1), now) is State.ISSUED
    assert token_state("used", now, now) is State.USED


# -- the judge -------------------------------------------------------------------------


def _head(entries: list[Entry], upto: int) -> tuple[Head, dict[int, str]]:
    stored = {e.seq: e.hash for e in entries[:upto]}
    digest = entries[upto - 1].hash if upto else GENESIS_PREV
    return Head(upto, digest, KEY.public_key()), stored


@given(st.integers(0, 12), st.integers(1, 12), st.integers(1, 12))
def test_any_slice_within_reach_is_accepted_idempotently(
    held: int, start: int, length: int
) -> None:
    entries = _chain(12)
    head, stored = _head(entries, held)
    piece = entries[start - 1 : start - 1 + length]
    verdict = judge("d1", piece, head, stored, [KEY.public_key()])
    if start > held + 1:
        assert (verdict.outcome, verdict.expected_seq) == ("gap", held + 1)
    else:
        assert verdict.outcome == "accept"
        assert [e.seq for e in verdict.new_entries] == [e.seq for e in piece if e.seq > held]


def test_the_judge_tells_forks_from_tampering() -> None:
    entries = _chain(6)
    head, stored = _head(entries, 4)
    other = sign_entry(
        KEY,
        device="d1",
        seq=4,
        ts="x",
        kind="earn",
        staff=None,
        body={"other": True},
        prev=entries[2].hash,
    )
    assert judge("d1", [*entries[:3], other], head, stored, [KEY.public_key()]).outcome == "fork"
    edited = dataclasses.replace(entries[4], body={"n": 999})
    verdict = judge("d1", [edited], head, stored, [KEY.public_key()])
    assert (verdict.outcome, verdict.code) == ("tampered", "tampered_entry")
    foreign = _chain(6, device="d2")
    assert judge("d1", foreign[4:], head, stored, [KEY.public_key()]).code == "device_mismatch"


# -- the wire and signed messages ----------------------------------------------------------


def test_gzip_is_bounded_and_checked() -> None:
    assert decode_json(gzip.compress(b'{"a": 1}'), "gzip") == {"a": 1}
    with pytest.raises(SyncError) as bomb:
        inflate(gzip.compress(b"0" * (MAX_INFLATED_BYTES + 1)))
    assert bomb.value.http_status == 413
    for body, encoding, status in (
        (b"nope", "gzip", 400),
        (b"{}", "br", 415),
        (b"[" * 100_000, None, 400),
        (b"NaN", None, 400),
    ):
        with pytest.raises(SyncError) as caught:
            decode_json(body, encoding)
        assert caught.value.http_status == status


def test_a_signed_message_opens_only_with_its_tag_and_key() -> None:
    message = signed(KEY, ACK_TAG, {"device": "d1", "head_seq": 3})
    assert open_signed(KEY.public_key(), ACK_TAG, message, "ack")["head_seq"] == 3
    forged = {**message, "document": {"device": "d1", "head_seq": 4}}
    for key, tag, body in (
        (KEY.public_key(), ACK_TAG, forged),
        (Ed25519PrivateKey.generate().public_key(), ACK_TAG, message),
        (KEY.public_key(), b"other\x00", message),
    ):
        with pytest.raises(SyncError) as caught:
            open_signed(key, tag, body, "ack")
        assert caught.value.code == "bad_hq_signature"


# -- key rotation ------------------------------------------------------------------------


def test_a_key_rotation_is_followed_by_the_chain_check_and_by_hq(
    tmp_path: Path, hq_store: HQStore
) -> None:
    state = make_till(tmp_path, "till")
    device = bind(hq_store, state)
    opened = Ledger(state)
    old_public = opened.public_key
    opened.close()
    rotated = rotate_device_key(state)
    assert rotated["public_key"] != old_public
    ledger = Ledger(state)
    ledger.enrol(name="Rot", phone="0633333333")  # signed with the new key
    ledger.close()
    entries = entries_of(state)
    assert [e.kind for e in entries] == ["init", "key_rotate", "enrol"]
    from agent.keys import load_public_key

    report, key = verify_rotating(entries, load_public_key(old_public))
    assert report.ok and key != load_public_key(old_public)
    hq = hq_key(hq_store)
    ack = ingest(hq_store, hq, device, batch_of(entries[:2]), utc_now(), utc_now())
    ack = ingest(hq_store, hq, device, batch_of(entries[2:]), utc_now(), utc_now())
    assert open_signed(hq.public_key(), ACK_TAG, ack, "ack")["head_seq"] == 3
    assert verify_all(hq_store)["ok"] is True


def test_a_rotation_signed_by_a_stranger_is_refused() -> None:
    entries = _chain(2)
    thief = Ed25519PrivateKey.generate()
    from agent.keys import public_key_text

    bogus = sign_entry(
        thief,
        device="d1",
        seq=3,
        ts="x",
        kind="key_rotate",
        staff=None,
        body={"public_key": public_key_text(thief.public_key())},
        prev=entries[1].hash,
    )
    report, _key = verify_rotating([*entries, bogus], KEY.public_key())
    assert not report.ok and report.first_bad_seq == 3 and report.reason == "bad signature"
