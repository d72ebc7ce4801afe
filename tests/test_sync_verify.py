"""HQ's fast batch check (``sync.hq.judge.verify_fresh``, ``agent.chain.canonical_entry``)
says exactly what the reference check (``agent.rotation.verify_rotating``) says, on
good chains and on every kind of damage, though it checks only the signatures at
the end of each key's run; and nobody without the device key gets past it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chain import GENESIS_PREV, Entry, canonical, canonical_entry, sign_entry
from agent.entries import Kind
from agent.keys import public_key_text
from agent.rotation import verify_rotating
from sync.hq import judge

KEYS = [Ed25519PrivateKey.generate() for _ in range(3)]
STRANGER = Ed25519PrivateKey.generate()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


def _chain(count: int, rotate_at: tuple[int, ...] = ()) -> list[Entry]:
    """``count`` entries of device d1; at each seq in ``rotate_at`` a ``key_rotate``
    hands over to the next key of KEYS."""
    entries, prev, signer = [], GENESIS_PREV, 0
    for seq in range(1, count + 1):
        if seq in rotate_at:
            kind = Kind.KEY_ROTATE
            body: dict[str, Any] = {"public_key": public_key_text(KEYS[signer + 1].public_key())}
        else:
            kind, body = "earn", {"account": f"m{seq}", "amount": seq * 10, "note": "é€"}
        entry = sign_entry(
            KEYS[signer],
            device="d1",
            seq=seq,
            ts="2026-01-01T00:00:00.000+00:00",
            kind=kind,
            staff=None,
            body=body,
            prev=prev,
        )
        signer += kind == Kind.KEY_ROTATE
        entries.append(entry)
        prev = entry.hash
    return entries


LONG = _chain(150, rotate_at=(40, 100))
SHORT = _chain(20, rotate_at=(7,))


def _damage(entries: list[Entry], how: str, at: int) -> list[Entry]:
    damaged = list(entries)
    entry = damaged[at]
    if how == "edit":
        damaged[at] = dataclasses.replace(entry, body={**entry.body, "amount": -1})
    elif how == "float":
        damaged[at] = dataclasses.replace(entry, body={**entry.body, "amount": 1.5})
    elif how == "bad_sig":
        damaged[at] = dataclasses.replace(entry, sig="00" * 64)
    elif how == "not_hex":
        damaged[at] = dataclasses.replace(entry, sig="zz")
    elif how == "short_sig":
        damaged[at] = dataclasses.replace(entry, sig=entry.sig[:-2])
    elif how == "drop":
        del damaged[at]
    elif how == "swap" and at + 1 < len(damaged):
        damaged[at], damaged[at + 1] = damaged[at + 1], damaged[at]
    elif how == "device":
        damaged[at] = dataclasses.replace(entry, device="d2")
    elif how == "stranger":
        damaged[at] = sign_entry(
            STRANGER,
            device=entry.device,
            seq=entry.seq,
            ts=entry.ts,
            kind=entry.kind,
            staff=entry.staff,
            body=entry.body,
            prev=entry.prev,
        )
    elif how == "rotate_to_nothing":
        # Validly signed by the key in force, but names no usable key.
        signer = KEYS[sum(e.kind == Kind.KEY_ROTATE for e in entries[:at])]
        damaged[at] = sign_entry(
            signer,
            device=entry.device,
            seq=entry.seq,
            ts=entry.ts,
            kind=Kind.KEY_ROTATE,
            staff=entry.staff,
            body={"public_key": "not a key"},
            prev=entry.prev,
        )
    return damaged


def _same_as_reference(entries: list[Entry], start: int = 0) -> None:
    head_seq = entries[start - 1].seq if start else 0
    head_hash = entries[start - 1].hash if start else GENESIS_PREV
    key = KEYS[sum(e.kind == Kind.KEY_ROTATE for e in entries[:start])].public_key()
    fresh = entries[start:]
    expected, expected_key = verify_rotating(
        fresh, key, device="d1", start_seq=head_seq + 1, start_prev=head_hash
    )
    report, in_force, bodies = judge.verify_fresh(
        fresh, key, device="d1", start_seq=head_seq + 1, start_prev=head_hash
    )
    assert report == expected
    assert public_key_text(in_force) == public_key_text(expected_key)
    assert bodies == tuple(canonical(entry.body) for entry in fresh[: report.entries])


@pytest.mark.parametrize("chain", [LONG, SHORT], ids=["long", "short"])
def test_a_good_chain_passes_both_checks_alike(chain: list[Entry]) -> None:
    _same_as_reference(chain)
    _same_as_reference(chain, start=len(chain) // 3)


DAMAGE = [
    "edit",
    "float",
    "bad_sig",
    "not_hex",
    "short_sig",
    "drop",
    "swap",
    "device",
    "stranger",
    "rotate_to_nothing",
]


@settings(max_examples=120, deadline=None)
@given(
    how=st.sampled_from(DAMAGE),
    where=st.floats(0, 0.999),
    long=st.booleans(),
    start=st.integers(0, 5),
)
def test_damage_is_reported_alike(how: str, where: float, long: bool, start: int) -> None:
    chain = LONG if long else SHORT
    at = start + int(where * (len(chain) - start))
    _same_as_reference(_damage(chain, how, at), start=start)


def test_a_rotation_to_no_key_is_named_as_such() -> None:
    report, _key, bodies = judge.verify_fresh(
        _damage(LONG, "rotate_to_nothing", 70), KEYS[0].public_key(), device="d1"
    )
    assert report.first_bad_seq == 71 and len(bodies) == 70
    assert report.reason == "key_rotate entry names no valid Ed25519 key"


def test_the_rotation_entries_are_where_the_reference_says() -> None:
    # Each rotation entry (and the one after it) damaged in turn.
    for at in (38, 39, 40, 98, 99, 100):
        for how in ("bad_sig", "stranger", "rotate_to_nothing", "edit"):
            _same_as_reference(_damage(LONG, how, at))


@given(
    body=st.dictionaries(st.text(max_size=6), json_values, max_size=5),
    texts=st.lists(st.text(max_size=12), min_size=4, max_size=4),
    staff=st.none() | st.text(max_size=6),
    seq=st.integers(min_value=-(2**70), max_value=2**70),
)
def test_canonical_entry_is_the_canonical_encoding(
    body: dict[str, Any], texts: list[str], staff: str | None, seq: int
) -> None:
    device, ts, kind, prev = texts
    entry = Entry(device, seq, ts, kind, staff, body, prev, "", "")
    unsigned, body_bytes = canonical_entry(entry)
    assert unsigned == canonical(entry.unsigned())
    assert body_bytes == canonical(body)


def test_canonical_entry_refuses_fields_of_the_wrong_type() -> None:
    for wrong in ({"seq": True}, {"seq": "7"}, {"device": 7}, {"staff": 3}, {"ts": None}):
        entry = dataclasses.replace(Entry("d", 7, "t", "earn", None, {}, "p", "", ""), **wrong)
        with pytest.raises(TypeError):
            canonical_entry(entry)


def test_canonical_entry_refuses_floats_wherever_they_hide() -> None:
    for body in ({"a": 1.0}, {"a": [1, {"b": 2.5}]}, {"a": [[[0.0]]]}):
        entry = Entry("d", 1, "t", "earn", None, body, "p", "", "")
        with pytest.raises(TypeError):
            canonical_entry(entry)
        with pytest.raises(TypeError):
            canonical(entry.unsigned())


def _resigned(
    entries: list[Entry], at: int, signer: Ed25519PrivateKey, body: Any = None
) -> list[Entry]:
    """``entries`` with entry ``at`` signed by ``signer`` (and given ``body``), and
    every later entry signed again by ``signer`` so that the links hold."""
    chain, prev = list(entries[:at]), entries[at - 1].hash if at else GENESIS_PREV
    for entry in entries[at:]:
        fresh = sign_entry(
            signer,
            device=entry.device,
            seq=entry.seq,
            ts=entry.ts,
            kind=entry.kind if body is None or entry.seq != at + 1 else Kind.KEY_ROTATE,
            staff=entry.staff,
            body=entry.body if body is None or entry.seq != at + 1 else body,
            prev=prev,
        )
        chain.append(fresh)
        prev = fresh.hash
    return chain


def test_a_stranger_who_rewrites_the_tail_is_refused() -> None:
    forged = _resigned(_chain(30), 10, STRANGER)
    fresh, key = forged[5:], KEYS[0].public_key()
    report, _key, _bodies = judge.verify_fresh(
        fresh, key, device="d1", start_seq=6, start_prev=forged[4].hash
    )
    expected, _ = verify_rotating(fresh, key, device="d1", start_seq=6, start_prev=forged[4].hash)
    assert report == expected
    assert not report.ok and report.first_bad_seq == 11 and report.reason == "bad signature"


def test_a_forged_rotation_to_a_strangers_key_is_refused() -> None:
    # The stranger announces their own key in an entry they sign, then signs on:
    # the run before the rotation ends in a signature that does not hold.
    rotation = {"public_key": public_key_text(STRANGER.public_key())}
    forged = _resigned(_chain(30), 12, STRANGER, body=rotation)
    report, _key, _bodies = judge.verify_fresh(forged, KEYS[0].public_key(), device="d1")
    expected, _ = verify_rotating(forged, KEYS[0].public_key(), device="d1")
    assert report == expected
    assert not report.ok and report.first_bad_seq == 13 and report.reason == "bad signature"


def test_a_bad_signature_sealed_in_by_the_key_holder_is_left_to_hq_verify() -> None:
    # Only the device key's holder can seal an invalid signature into a chain
    # that its next signatures vouch for: upload takes it, the full audit names it.
    mine = _chain(30)
    broken = sign_entry(
        STRANGER,
        device="d1",
        seq=9,
        ts=mine[8].ts,
        kind="earn",
        staff=None,
        body=mine[8].body,
        prev=mine[7].hash,
    )
    chain = [*mine[:8], broken]
    for entry in mine[9:]:
        chain.append(
            sign_entry(
                KEYS[0],
                device="d1",
                seq=entry.seq,
                ts=entry.ts,
                kind=entry.kind,
                staff=None,
                body=entry.body,
                prev=chain[-1].hash,
            )
        )
    report, _key, _bodies = judge.verify_fresh(chain, KEYS[0].public_key(), device="d1")
    assert report.ok and report.entries == 30
    audit, _ = verify_rotating(chain, KEYS[0].public_key(), device="d1")
    assert not audit.ok and audit.first_bad_seq == 9 and audit.reason == "bad signature"


@given(value=json_values)
def test_canonical_is_json_dumps_with_sorted_keys(value: Any) -> None:
    reference = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    assert canonical(value) == reference


def test_canonical_refuses_what_json_refuses() -> None:
    with pytest.raises(ValueError):
        canonical({"a": float("nan")}, checked=True)
    with pytest.raises(TypeError):
        canonical({"a": object()}, checked=True)
    with pytest.raises(TypeError):
        canonical({"a": 1.5})
