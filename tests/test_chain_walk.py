"""The one chain walker (``agent.chain.walk_chain``) gives the same verdict under
both signature policies, every entry's (``log verify``, ``hq verify``) and key-run
ends only (HQ's upload check, the check before ``tillpoints sync``), on random
chains with random damage: the same report (ok, or the same first bad seq and
reason), the same key in force, the same bodies. The one documented difference: a
bad signature the key's holder sealed into its own chain (re-signing what follows)
is named only by the every-entry policy."""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chain import (
    GENESIS_PREV,
    Entry,
    Walk,
    canonical,
    content_digest,
    seal,
    sign_entry,
    walk_chain,
)
from agent.entries import Kind
from agent.keys import public_key_text

KEYS = [Ed25519PrivateKey.generate() for _ in range(4)]
STRANGER = Ed25519PrivateKey.generate()
TS = "2026-01-01T00:00:00.000+00:00"

bodies = st.dictionaries(
    st.text(max_size=4),
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    max_size=3,
)


def _sign(key: Ed25519PrivateKey, seq: int, kind: str, body: dict[str, Any], prev: str) -> Entry:
    return sign_entry(key, device="d1", seq=seq, ts=TS, kind=kind, staff=None, body=body, prev=prev)


def _resign(entries: list[Entry], signers: list[Ed25519PrivateKey], start: int) -> None:
    """Re-link and re-sign ``entries[start:]``, each with its signer: what only the
    holder of the keys can do."""
    for i in range(start, len(entries)):
        prev = entries[i - 1].hash if i else GENESIS_PREV
        e = entries[i]
        entries[i] = _sign(signers[i], e.seq, e.kind, e.body, prev)


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[Entry], list[Ed25519PrivateKey]]:
    """A good chain of device d1 and the key that signs each entry; some entries
    are ``key_rotate`` entries handing over to the next of KEYS."""
    count = draw(st.integers(1, 24))
    entries: list[Entry] = []
    signers: list[Ed25519PrivateKey] = []
    signer, prev = 0, GENESIS_PREV
    for seq in range(1, count + 1):
        if signer + 1 < len(KEYS) and draw(st.integers(0, 5)) == 0:
            kind, body = (
                Kind.KEY_ROTATE,
                {"public_key": public_key_text(KEYS[signer + 1].public_key())},
            )
        else:
            kind, body = "earn", draw(bodies)
        entry = _sign(KEYS[signer], seq, kind, body, prev)
        entries.append(entry)
        signers.append(KEYS[signer])
        signer += kind == Kind.KEY_ROTATE
        prev = entry.hash
    return entries, signers


TAMPERS = ("edit", "delete", "insert_copy", "insert_forged", "reorder", "bad_sig", "forge_rotation")


def _tamper(entries: list[Entry], how: str, at: int) -> None:
    """Damage ``entries`` in place as someone without the device keys could."""
    at = at % len(entries)
    entry = entries[at]
    if how == "edit":
        entries[at] = dataclasses.replace(entry, body={**entry.body, "amount": -1})
    elif how == "delete":
        del entries[at]
    elif how == "insert_copy":
        entries.insert(at, entries[(at * 7 + 3) % len(entries)])
    elif how == "insert_forged":  # well linked and hashed, signed by a stranger
        entries.insert(at, _sign(STRANGER, entry.seq, "earn", {"amount": 5}, entry.prev))
    elif how == "reorder" and at + 1 < len(entries):
        entries[at], entries[at + 1] = entries[at + 1], entries[at]
    elif how == "bad_sig":
        entries[at] = dataclasses.replace(entry, sig="00" * 64)
    elif how == "forge_rotation":
        # A rotation to the stranger's key, signed by the stranger, and everything
        # after it re-signed by the stranger: a chain that hands itself over.
        body = {"public_key": public_key_text(STRANGER.public_key())}
        entries[at] = _sign(STRANGER, entry.seq, Kind.KEY_ROTATE, body, entry.prev)
        _resign(entries, [STRANGER] * len(entries), at + 1)


def _both(entries: list[Entry], *, rotations: bool = True, start: int = 0) -> tuple[Walk, Walk]:
    head = entries[start - 1].hash if start else GENESIS_PREV
    walks = tuple(
        walk_chain(
            entries[start:],
            KEYS[0].public_key() if not start else _key_at(entries, start),
            signatures=policy,
            rotations=rotations,
            device="d1",
            start_seq=start + 1,
            start_prev=head,
            bodies=True,
        )
        for policy in ("every", "run_ends")
    )
    return walks[0], walks[1]


def _key_at(entries: list[Entry], index: int) -> Any:
    """The key in force for ``entries[index]`` of an undamaged chain."""
    rotations = sum(entry.kind == Kind.KEY_ROTATE for entry in entries[:index])
    return KEYS[rotations].public_key()


def _same(every: Walk, run_ends: Walk) -> None:
    assert run_ends.report == every.report
    assert public_key_text(run_ends.key) == public_key_text(every.key)
    assert run_ends.bodies == every.bodies


@settings(max_examples=300, deadline=None)
@given(chains(), st.lists(st.tuples(st.sampled_from(TAMPERS), st.integers(0, 99)), max_size=3))
def test_both_policies_agree_on_damaged_chains(
    chain: tuple[list[Entry], list[Ed25519PrivateKey]], tampers: list[tuple[str, int]]
) -> None:
    entries = list(chain[0])
    for how, at in tampers:
        if entries:
            _tamper(entries, how, at)
    every, run_ends = _both(entries)
    _same(every, run_ends)
    if not tampers:
        assert every.report.ok and every.report.entries == len(entries)
        assert every.bodies == tuple(canonical(entry.body) for entry in entries)


@settings(max_examples=100, deadline=None)
@given(chains(), st.integers(0, 99), st.booleans())
def test_both_policies_agree_from_a_held_head_and_without_rotations(
    chain: tuple[list[Entry], list[Ed25519PrivateKey]], start: int, rotations: bool
) -> None:
    """Continuing from an entry already held (HQ's head), or walking with one key
    (``verify_chain``: entries after a rotation are then badly signed)."""
    entries = chain[0]
    start %= len(entries)
    every, run_ends = _both(entries, rotations=rotations, start=start)
    _same(every, run_ends)
    handovers = [i for i, e in enumerate(entries[:-1]) if e.kind == Kind.KEY_ROTATE and i >= start]
    if not rotations and handovers:  # the entry after the first handover is under the new key
        assert every.report.first_bad_seq == handovers[0] + 2
        assert every.report.reason == "bad signature"
    else:
        assert every.report.ok and every.report.head_seq == len(entries)


@settings(max_examples=100, deadline=None)
@given(chains(), st.integers(0, 99))
def test_a_bad_signature_sealed_by_the_key_holder_is_named_only_by_every(
    chain: tuple[list[Entry], list[Ed25519PrivateKey]], at: int
) -> None:
    """The documented difference. The holder of the key gives entry ``at`` a bad
    signature, seals it into the entry's hash and re-signs everything after it: the
    every-entry policy names ``at``; the run-ends policy names it too when it ends
    its key's run (the last entry, or a rotation), and otherwise finds no fault."""
    entries, signers = list(chain[0]), chain[1]
    at %= len(entries)
    entry = entries[at]
    sig = "00" * 64
    entries[at] = dataclasses.replace(
        entry, sig=sig, hash=seal(content_digest(entry.unsigned()), sig)
    )
    _resign(entries, signers, at + 1)
    every, run_ends = _both(entries)
    assert not every.report.ok
    assert every.report.first_bad_seq == at + 1
    assert every.report.reason == "bad signature"
    if at == len(entries) - 1 or entry.kind == Kind.KEY_ROTATE:
        _same(every, run_ends)
    else:
        assert run_ends.report.ok and run_ends.report.entries == len(entries)
