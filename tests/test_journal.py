"""Tamper evidence: every edit, deletion, insertion or reordering of a stored entry
is caught by `log verify`, which names the first bad sequence number."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.audit import export_log, verify_file, verify_ledger
from agent.chain import Entry, canonical, verify_chain
from agent.keys import public_key_text
from agent.ledger import Ledger
from tillpoints.bench_hq import signed_entries

CARD = "9900835840532866"


@pytest.fixture(name="busy")  # also tests/test_journal_owner.py's
def busy_fixture(ledger: Ledger) -> Ledger:
    ledger.enrol(name="A", phone="5550001", card=CARD)
    for number in range(6):
        ledger.earn(CARD, f"R{number}", amount=1000 + number)
    ledger.redeem(CARD, "P1", 100)
    return ledger


def tamper(ledger: Ledger, sql: str, *params: object) -> None:
    """Edit the database file behind the ledger's back, as an attacker would."""
    conn = sqlite3.connect(ledger.state_dir / "ledger.db")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_an_untouched_journal_verifies(busy: Ledger) -> None:
    report = verify_ledger(busy)
    assert report.ok and report.entries == 9 and report.head == busy.head()[1]


def test_an_edited_body_is_caught(busy: Ledger) -> None:
    row = busy.store.conn.execute("SELECT body FROM journal WHERE seq = 5").fetchone()
    tamper(busy, "UPDATE journal SET body = ? WHERE seq = 5", row[0].replace("1002", "9002"))
    report = verify_ledger(busy)
    assert not report.ok and report.first_bad_seq == 5 and "hash" in (report.reason or "")


def test_an_edit_with_a_recomputed_hash_fails_the_signature(busy: Ledger) -> None:
    entry = list(busy.entries())[4]
    body = {**entry.body, "amount": 9002}
    forged = Entry(
        entry.device, entry.seq, entry.ts, entry.kind, entry.staff, body, entry.prev, "", ""
    )
    from agent.chain import content_digest, seal

    digest = seal(content_digest(forged.unsigned()), entry.sig)
    tamper(
        busy,
        "UPDATE journal SET body = ?, hash = ? WHERE seq = 5",
        canonical(body).decode(),
        digest,
    )
    report = verify_ledger(busy)
    assert not report.ok and report.first_bad_seq == 5


def test_a_deleted_entry_is_caught(busy: Ledger) -> None:
    tamper(busy, "DELETE FROM journal WHERE seq = 4")
    report = verify_ledger(busy)
    assert not report.ok and report.first_bad_seq == 4 and "gap" in (report.reason or "")


def test_reordered_entries_are_caught(busy: Ledger) -> None:
    tamper(busy, "UPDATE journal SET seq = 100 WHERE seq = 4")
    tamper(busy, "UPDATE journal SET seq = 4 WHERE seq = 5")
    tamper(busy, "UPDATE journal SET seq = 5 WHERE seq = 100")
    report = verify_ledger(busy)
    assert not report.ok and report.first_bad_seq == 4


def test_a_truncated_tail_is_caught(busy: Ledger) -> None:
    tamper(busy, "DELETE FROM journal WHERE seq >= 8")
    report = verify_ledger(busy)
    assert not report.ok and "truncated" in (report.reason or "")


def test_an_edited_balance_is_caught(busy: Ledger) -> None:
    tamper(busy, "UPDATE lots SET points = points + 1000")
    report = verify_ledger(busy)
    assert not report.ok and "balances" in (report.reason or "")


def test_export_verifies_elsewhere_with_the_public_key_only(busy: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    summary = export_log(busy, out)
    assert summary.entries == 9
    assert verify_file(out, busy.public_key).ok
    other = public_key_text(Ed25519PrivateKey.generate().public_key())
    report = verify_file(out, other)
    assert not report.ok and report.first_bad_seq == 1 and report.reason == "bad signature"
    lines = out.read_text().splitlines()
    del lines[3]
    out.write_text("\n".join(lines) + "\n")
    report = verify_file(out, busy.public_key)
    assert not report.ok and report.first_bad_seq == 3


KEY = Ed25519PrivateKey.generate()
CHAIN = signed_entries(KEY, 12)
DEVICE = CHAIN[0].device


@settings(max_examples=300)
@given(
    st.sampled_from(["drop", "swap", "edit", "duplicate"]),
    st.integers(min_value=0, max_value=11),
    st.integers(min_value=0, max_value=11),
)
def test_any_single_change_to_a_chain_is_caught(change: str, i: int, j: int) -> None:
    entries = list(CHAIN)
    if change == "drop":
        del entries[i]
        first_bad = i + 1
    elif change == "swap":
        if i == j:
            return
        entries[i], entries[j] = entries[j], entries[i]
        first_bad = min(i, j) + 1
    elif change == "edit":
        old = entries[i]
        entries[i] = Entry(
            old.device,
            old.seq,
            old.ts,
            old.kind,
            old.staff,
            {**old.body, "amount": old.body["amount"] + 1 + j},
            old.prev,
            old.hash,
            old.sig,
        )
        first_bad = i + 1
    else:
        entries.insert(j, entries[i])
        first_bad = i + 2 if j == i else j + 1
    report = verify_chain(entries, KEY.public_key(), device=DEVICE)
    if change == "drop" and i == 11:
        assert report.ok and report.entries == 11  # a cut tail needs the recorded head
        return
    assert not report.ok
    assert report.first_bad_seq == first_bad


def test_entries_refuse_floats() -> None:
    with pytest.raises(TypeError):
        canonical({"amount": 1.5})
    with pytest.raises(ValueError):
        Entry.from_json(json.loads('{"v": 1}'))


def test_an_entry_of_the_v1_format_is_refused_by_name(busy: Ledger) -> None:
    # v1 hashed the content only; a v2 reader must not take such an entry.
    old = {**next(iter(busy.entries())).to_json(), "v": 1}
    with pytest.raises(ValueError, match="unknown entry format 1"):
        Entry.from_json(old)


def test_a_key_rotation_keeps_the_chain_verifiable(busy: Ledger, tmp_path: Path) -> None:
    from agent.rotation import rotate_device_key

    old_key = busy.public_key
    rotated = rotate_device_key(busy.state_dir)
    busy.close()
    reopened = Ledger(busy.state_dir)
    try:
        assert reopened.public_key == rotated["public_key"] != old_key
        reopened.earn(CARD, "AFTER", amount=1000)
        report = verify_ledger(reopened)
        assert report.ok and report.entries == 11
        out = tmp_path / "rotated.jsonl"
        export_log(reopened, out)
        assert verify_file(out, old_key).ok
    finally:
        reopened.close()
    busy.store = Ledger(busy.state_dir).store  # let the fixture close something open


def test_a_malformed_line_in_an_export_is_named(busy: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    export_log(busy, out)
    lines = out.read_text().splitlines()
    lines[5] = "{not json"
    out.write_text("\n".join(lines) + "\n")
    report = verify_file(out, busy.public_key)
    assert not report.ok and report.first_bad_seq == 5 and report.entries == 4
    assert report.reason == "line 6 is not a journal entry"
