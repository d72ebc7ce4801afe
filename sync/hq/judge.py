"""Judge an uploaded batch against what HQ holds for the device: pure logic.

HQ's storage layer reads the device's head (under its row lock) and the hashes it
holds where the batch overlaps, and this module decides:

- ``accept``: the entries past the head continue the chain; already-held entries
  (a resent or overlapping batch) match hash for hash and are skipped, so a
  repeat is idempotent.
- ``gap``: the batch starts past ``head + 1``; the till must resend from there.
- ``fork``: a *validly signed* entry disagrees with the history HQ holds (a
  cloned till, or a till restored from a backup that went on recording). Only
  the device's key can sign, so this is two histories of one device.
- ``tampered``: an entry whose hash or signature does not verify, a hole in the
  sequence, or an entry of another device (a replay under a foreign identity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.chain import (
    GENESIS_PREV,
    ChainReport,
    Entry,
    content_digest,
    seal,
    signature_valid,
    walk_chain,
)

Outcome = Literal["accept", "gap", "fork", "tampered"]
# An entry's digest and canonical body bytes (``agent.chain.canonical_digest``).
Encode = Callable[[Entry], tuple[bytes, bytes]]


@dataclass(frozen=True)
class Head:
    """HQ's last entry of a device and the key in force after it."""

    seq: int
    hash: str
    key: Ed25519PublicKey


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    new_entries: tuple[Entry, ...] = ()
    # The key in force after the new entries (differs after a ``key_rotate``).
    key: Ed25519PublicKey | None = None
    # ``canonical(entry.body)`` of each new entry, as verified: what HQ stores.
    bodies: tuple[bytes, ...] = ()
    expected_seq: int | None = None
    bad_seq: int | None = None
    reason: str = ""
    code: str = ""
    details: dict[str, object] = field(default_factory=dict)


def overlap_range(entries: Sequence[Entry], head_seq: int) -> tuple[int, int] | None:
    """Sequence numbers whose stored hashes the judge needs: the one before the
    batch (its link) through the last already-held entry of the batch."""
    first = entries[0].seq
    if first > head_seq + 1:
        return None
    low = max(first - 1, 1)
    high = min(entries[-1].seq, head_seq)
    return (low, high) if low <= high else None


def judge(
    device: str,
    entries: Sequence[Entry],
    head: Head,
    stored: Mapping[int, str],
    known_keys: Sequence[Ed25519PublicKey],
    encode: Encode | None = None,
) -> Verdict:
    """``stored`` maps the seqs of ``overlap_range`` to the hashes HQ holds;
    ``known_keys`` are every key the device has used (to tell fork from tamper);
    ``encode`` as for ``agent.chain.walk_chain`` (HQ's ingest reads each new body
    there once, for its hash and its columns)."""
    for entry in entries:
        if entry.device != device:
            return Verdict(
                "tampered",
                bad_seq=entry.seq,
                code="device_mismatch",
                reason=f"entry {entry.seq} belongs to device {entry.device!r}, not {device!r}",
            )
    for before, after in pairwise(entries):
        if after.seq != before.seq + 1:
            return Verdict(
                "tampered",
                bad_seq=before.seq + 1,
                code="sequence_gap",
                reason=f"sequence gap in the batch: {before.seq} is followed by {after.seq}",
            )
    first = entries[0].seq
    if first < 1:
        return Verdict("tampered", bad_seq=first, code="bad_sequence", reason="seq starts at 1")
    if first > head.seq + 1:
        return Verdict(
            "gap",
            expected_seq=head.seq + 1,
            code="expected_seq",
            reason=f"HQ holds this device up to {head.seq}; resend from {head.seq + 1}",
        )
    held = [entry for entry in entries if entry.seq <= head.seq]
    fresh = tuple(entry for entry in entries if entry.seq > head.seq)
    link = GENESIS_PREV if first == 1 else stored.get(first - 1)
    for entry in held:
        expected = stored.get(entry.seq)
        if entry.hash != expected:
            return _divergence(entry, known_keys, f"entry {entry.seq} differs from HQ's copy")
    if held and entries[0].prev != link:
        return _divergence(entries[0], known_keys, f"entry {first} links to another history")
    if not fresh:
        return Verdict("accept", key=head.key)
    report, key, bodies = verify_fresh(
        fresh, head.key, device=device, start_seq=head.seq + 1, start_prev=head.hash, encode=encode
    )
    if report.ok:
        return Verdict("accept", new_entries=fresh, key=key, bodies=bodies)
    bad = next(entry for entry in fresh if entry.seq == report.first_bad_seq)
    return _divergence(bad, (*known_keys, key), report.reason or "chain broken")


def _divergence(entry: Entry, keys: Sequence[Ed25519PublicKey], reason: str) -> Verdict:
    if _self_consistent(entry, keys):
        return Verdict(
            "fork",
            bad_seq=entry.seq,
            code="fork",
            reason=f"{reason}: a validly signed entry {entry.seq} of another history",
        )
    return Verdict("tampered", bad_seq=entry.seq, code="tampered_entry", reason=reason)


def _self_consistent(entry: Entry, keys: Sequence[Ed25519PublicKey]) -> bool:
    """The entry's hash is right and one of the device's keys signed it."""
    try:
        digest = content_digest(entry.unsigned())
    except (TypeError, ValueError):
        return False
    if seal(digest, entry.sig) != entry.hash:
        return False
    return any(signature_valid(key, digest, entry.sig) for key in keys)


# -- verifying the new entries: the walker, signatures at key-run ends -----------------


def verify_fresh(
    entries: Sequence[Entry],
    public_key: Ed25519PublicKey,
    *,
    device: str | None = None,
    start_seq: int = 1,
    start_prev: str = GENESIS_PREV,
    encode: Encode | None = None,
) -> tuple[ChainReport, Ed25519PublicKey, tuple[bytes, ...]]:
    """``agent.rotation.verify_rotating``'s report and key in force, plus each good
    entry's canonical body bytes, with a handful of signature checks per batch
    (``agent.chain.walk_chain`` with ``signatures="run_ends"``: HQ already holds
    the entry before the batch as verified)."""
    walk = walk_chain(
        entries,
        public_key,
        signatures="run_ends",
        rotations=True,
        device=device,
        start_seq=start_seq,
        start_prev=start_prev,
        bodies=True,
        encode=encode,
    )
    return walk.report, walk.key, walk.bodies
