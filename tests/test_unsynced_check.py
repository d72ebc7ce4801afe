"""The check before ``tillpoints sync`` (``agent.integrity.check_unsynced``) hashes
each stored body as it is stored, without decoding it; a body whose stored bytes
do not give the entry's hash is judged by its canonical encoding, as HQ judges
it. Real ledger files, edited with SQLite as someone with the disk would."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.integrity import check_unsynced
from agent.ledger import Ledger
from agent.rotation import rotate_device_key


def _till(tmp_path: Path) -> tuple[Path, int]:
    """A till with a few entries and a key rotation; the seq of an ``earn``."""
    state = tmp_path / "state"
    ledger = Ledger.init(state, "S001", "T01")
    member = ledger.enrol(name="Bo", phone="0622222222").member_id
    ledger.earn(member, "K1", amount=1000)
    earn = ledger.head()[0]
    ledger.close()
    rotate_device_key(state)
    ledger = Ledger(state)
    ledger.earn(member, "K2", amount=500)
    ledger.close()
    return state, earn


def _set_body(state: Path, seq: int, body: object) -> None:
    conn = sqlite3.connect(state / "ledger.db")
    with conn:
        conn.execute("UPDATE journal SET body = ? WHERE seq = ?", (body, seq))
    conn.close()


def _check(state: Path) -> tuple[bool, int | None, str | None]:
    conn = sqlite3.connect(state / "ledger.db")
    try:
        report = check_unsynced(conn)
    finally:
        conn.close()
    return report.ok, report.first_bad_seq, report.reason


def _body(state: Path, seq: int) -> str:
    conn = sqlite3.connect(state / "ledger.db")
    try:
        return str(conn.execute("SELECT body FROM journal WHERE seq = ?", (seq,)).fetchone()[0])
    finally:
        conn.close()


def test_a_whole_journal_with_a_rotation_verifies(tmp_path: Path) -> None:
    state, _ = _till(tmp_path)
    assert _check(state)[0]


def test_a_body_stored_in_another_layout_of_the_same_value_still_verifies(
    tmp_path: Path,
) -> None:
    """Spaces and key order are not what was signed, but the value is: HQ decodes
    the body it is sent and hashes its canonical encoding, and so does this check."""
    state, earn = _till(tmp_path)
    text = _body(state, earn)
    _set_body(state, earn, " " + text.replace(",", ", ").replace(":", ": ") + "\n")
    assert _check(state) == (True, None, None)


def test_an_edited_body_is_named(tmp_path: Path) -> None:
    state, earn = _till(tmp_path)
    _set_body(state, earn, _body(state, earn).replace("1000", "9000"))
    assert _check(state) == (False, earn, "hash mismatch (the entry was edited)")


@pytest.mark.parametrize(
    "body",
    ["not json", "[1, 2]", "null", b"\xff\xfe not utf-8", 42],
    ids=["text", "array", "null", "blob", "integer"],
)
def test_a_body_that_is_not_a_json_object_is_named(tmp_path: Path, body: object) -> None:
    state, earn = _till(tmp_path)
    _set_body(state, earn, body)
    assert _check(state) == (False, earn, "the entry's body is not a JSON object")


def test_a_rotation_whose_body_is_not_json_is_named(tmp_path: Path) -> None:
    state, _ = _till(tmp_path)
    conn = sqlite3.connect(state / "ledger.db")
    rotation = conn.execute("SELECT seq FROM journal WHERE kind = 'key_rotate'").fetchone()[0]
    conn.close()
    _set_body(state, rotation, "{")
    assert _check(state) == (False, rotation, "the entry's body is not a JSON object")


def test_after_a_body_in_another_layout_a_later_edit_is_still_named(tmp_path: Path) -> None:
    state, earn = _till(tmp_path)
    last = earn + 2  # the earn after the rotation
    _set_body(state, earn, _body(state, earn).replace(",", ", "))
    _set_body(state, last, _body(state, last).replace("500", "5000"))
    assert _check(state) == (False, last, "hash mismatch (the entry was edited)")
