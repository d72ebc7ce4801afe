"""Member privacy (issue 17): sealed enrolments, erasure, export, consent, retention.

The proof: a member enrolled at one till and seen at another is erased at HQ over
real HTTP sync; then every file of HQ's SQLite directory and of both tills' state
directories is read as bytes, and none of the member's name, phone number, phone key,
birthday or district is there, while every chain still verifies and the liability
is what it was. The same on PostgreSQL for HQ's rows and the export.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.entries import Enrol, Member, readable
from agent.errors import InvalidInput
from agent.ledger import Ledger
from agent.privacy import disclosed, marketing_flag, new_key, seal
from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.insight.catalog import run_report
from sync.hq.stores import open_store
from sync.protocol import Batch
from tests.sync_helpers import (
    HQServer,
    cli,
    hq_points,
    pg_schema,
    two_stores,
)

# Long, distinctive values: found by chance in no hash or signature.
NAME = "Zephyrine Quillfeather-Okonkwo"
PHONE = "+33 6 12 34 98 76 5"
PHONE_DIGITS = "+336123498765"
DISTRICT = "Vauxhall-Marchmont Upper Quarter"
TODAY = dt.date.today()


def _birthday() -> str:
    soon = TODAY + dt.timedelta(days=3)
    day = 28 if soon.month == 2 and soon.day == 29 else soon.day
    return f"1987-{soon.month:02d}-{day:02d}"


BIRTHDAY = _birthday()


@dataclass
class Chain:
    root: Path
    url: str
    server: HQServer
    hq: HQStore
    home: Path
    away: Path
    member: str
    other: str
    card: str
    phone_key: str


def _card(state: Path, member: str) -> str:
    ledger = Ledger(state)
    try:
        row = ledger.store.conn.execute(
            "SELECT card, (SELECT phone_key FROM members WHERE member_id = ?) FROM cards "
            "WHERE account = ?",
            (member, member),
        ).fetchone()
        return f"{row[0]} {row[1]}"
    finally:
        ledger.close()


@contextlib.contextmanager
def _chain(root: Path, url: str) -> Iterator[Chain]:
    with two_stores(root, url, root / "hq" / "hq.log") as (server, hq, home, away):
        ledger = Ledger(home)
        try:
            member = ledger.enrol(
                name=NAME,
                phone=PHONE,
                birthday=BIRTHDAY,
                gender="F",
                district=DISTRICT,
                household=3,
                consent_marketing=True,
            ).member_id
            other = ledger.enrol(name="Bo Other", phone="0698765432", consent_marketing=True)
            for n in range(3):
                ledger.earn(member, f"H{n}", amount=2500)
        finally:
            ledger.close()
        card, phone_key = _card(home, member).split()
        for state in (home, away):
            assert cli(state, "sync")[0] == 0
        code, earned = cli(away, "earn", "--member", card, "--receipt", "A1", "--amount", "9.00")
        assert code == 0, earned
        assert cli(away, "sync")[0] == 0
        yield Chain(root, url, server, hq, home, away, member, other.member_id, card, phone_key)


@pytest.fixture
def sqlite_chain(tmp_path: Path) -> Iterator[Chain]:
    (tmp_path / "hq").mkdir()
    with _chain(tmp_path, f"sqlite:///{tmp_path}/hq/hq.db") as chain:
        yield chain


def _files(*dirs: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for root in dirs for path in root.rglob("*") if path.is_file()}


SECRETS = (NAME, PHONE_DIGITS, PHONE_DIGITS[1:], BIRTHDAY, DISTRICT)


def _found(files: dict[Path, bytes], values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (value, path.name)
        for path, data in files.items()
        for value in values
        if value.encode() in data or value.encode("utf-16-le") in data
    ]


def _liability(url: str) -> int:
    store = open_store(url)
    try:
        return int(run_report(store, "liability")["totals"]["points"])
    finally:
        store.close()


def _listed(url: str, name: str) -> set[str]:
    store = open_store(url)
    try:
        return {row["member_id"] for row in run_report(store, name)["rows"]}
    finally:
        store.close()


def test_the_journal_carries_no_personal_field_in_the_clear(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    ledger = Ledger(chain.home)
    try:
        enrol = next(entry for entry in ledger.entries() if entry.kind == "enrol")
    finally:
        ledger.close()
    member = enrol.body["member"]
    assert member["sealed"].startswith("v1:")
    assert all(member[name] is None for name in ("name", "phone_key", "birthday", "district"))
    assert NAME not in json.dumps(enrol.body)


def test_erasure_leaves_no_byte_of_the_member_anywhere(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    dirs = (chain.root / "hq", chain.home, chain.away)
    # Before: the export shows her; the tills hold her name (the test can see it).
    code, before = cli(None, "hq", "member", "export", "--db", chain.url, "--member", chain.member)
    assert code == 0, before
    assert (before["name"], before["district"], before["birthday"]) == (NAME, DISTRICT, BIRTHDAY)
    assert {visit["store"] for visit in before["entries"]} == {"S001", "S002"}
    assert any(NAME.encode() in data for data in _files(chain.home).values())
    assert any(NAME.encode() in data for data in _files(chain.away).values())
    assert chain.member in _listed(chain.url, "birthdays")
    liability, points = _liability(chain.url), hq_points(chain.hq)

    code, erased = cli(
        None, "hq", "member", "erase", "--db", chain.url, "--member", chain.member,
        "--reason", "subject asked (ticket 4411)",
    )  # fmt: skip
    assert (code, erased["member_id"], erased["erased"]) == (0, chain.member, True)
    for state in (chain.home, chain.away):
        code, summary = cli(state, "sync")
        assert code == 0, summary

    found = _found(_files(*dirs), (*SECRETS, chain.phone_key))
    assert found == []
    assert cli(None, "hq", "verify", "--db", chain.url)[0] == 0
    for state in (chain.home, chain.away):
        code, verified = cli(state, "log", "verify")
        assert code == 0, verified
    assert (_liability(chain.url), hq_points(chain.hq)) == (liability, points)
    code, after = cli(None, "hq", "member", "export", "--db", chain.url, "--member", chain.member)
    assert code == 0 and after["erased"]["reason"] == "subject asked (ticket 4411)"
    assert all(after[k] is None for k in ("name", "birthday", "district", "gender", "phone_key"))
    assert after["balance"] == before["balance"] and len(after["entries"]) == len(before["entries"])
    assert chain.member not in _listed(chain.url, "birthdays")
    assert chain.member not in _listed(chain.url, "callbacks")
    # The audit says who, when and why.
    with chain.hq.read() as tx:
        row = tx.one("SELECT action, reason FROM hq_audit WHERE target = ?", (chain.member,))
    assert row == ("erase_member", "subject asked (ticket 4411)")
    # The tills still earn for her, pseudonymously.
    code, earned = cli(
        chain.away, "earn", "--member", chain.card, "--receipt", "A2", "--amount", "1.00"
    )
    assert code == 0, earned
    # Erasing twice is a clear answer, and writes nothing.
    code, again = cli(
        None, "hq", "member", "erase", "--db", chain.url, "--member", chain.member, "--reason", "x"
    )
    assert (code, again["error"]) == (3, "already_erased")


def test_consent_withdrawn_takes_the_member_off_every_list(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    assert chain.member in _listed(chain.url, "birthdays")
    assert chain.member in _listed(chain.url, "callbacks")
    code, said = cli(chain.home, "consent", "--member", chain.card, "--marketing", "no")
    assert (code, said) == (0, {"member_id": chain.member, "marketing": False})
    assert cli(chain.home, "sync")[0] == 0
    assert chain.member not in _listed(chain.url, "birthdays")
    assert chain.member not in _listed(chain.url, "callbacks")
    with chain.hq.read() as tx:
        assert tx.one("SELECT consent FROM ins_members WHERE member_id = ?", (chain.member,)) == (
            0,
        )
    # HQ's later word counts: given again at HQ, audited; withdrawn again at HQ.
    args = ("hq", "member", "consent", "--db", chain.url, "--member", chain.member)
    assert cli(None, *args, "--marketing", "yes")[1] == {
        "member_id": chain.member,
        "marketing": True,
    }
    assert chain.member in _listed(chain.url, "birthdays")
    assert cli(None, *args, "--marketing", "no")[0] == 0
    assert chain.member not in _listed(chain.url, "callbacks")
    with chain.hq.read() as tx:
        rows = tx.all("SELECT action FROM hq_audit WHERE target = ?", (chain.member,))
    assert [str(row[0]) for row in rows] == ["member_consent", "member_consent"]


BAD_HQ = [
    (("hq", "member", "erase", "--member", "NOPE-1", "--reason", "x"), 3, "unknown_member"),
    (("hq", "member", "erase", "--member", "bad id!", "--reason", "x"), 2, "invalid_member"),
    (("hq", "member", "erase", "--member", "M", "--reason", "  "), 2, "invalid_reason"),
    (("hq", "member", "erase", "--member", "M"), 2, "invalid_usage"),
    (("hq", "member", "export", "--member", "NOPE-1"), 3, "unknown_member"),
    (("hq", "member", "export", "--member", ""), 2, "invalid_member"),
    (("hq", "member", "consent", "--member", "NOPE-1", "--marketing", "no"), 3, "unknown_member"),
    (("hq", "member", "consent", "--member", "M", "--marketing", "maybe"), 2, "invalid_marketing"),
    (("hq", "member", "retention", "--lapsed-days", "0"), 2, "invalid_lapsed_days"),
    (("hq", "member", "retention", "--lapsed-days", "x"), 2, "invalid_lapsed_days"),
]


def _state_of(url: str) -> list[Any]:
    store = open_store(url)
    try:
        with store.read() as tx:
            return [
                tx.all(f"SELECT * FROM {table}")
                for table in ("hq_audit", "hq_erasures", "hq_member_keys", "hq_consents")
            ]
    finally:
        store.close()


def test_every_bad_hq_input_is_refused_by_name_and_writes_nothing(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    before = _state_of(chain.url)
    for args, status, error in BAD_HQ:
        code, answer = cli(None, *args[:3], "--db", chain.url, *args[3:])
        assert (code, answer.get("error")) == (status, error), (args, answer)
    assert _state_of(chain.url) == before
    code, dry = cli(None, "hq", "member", "retention", "--db", chain.url, "--lapsed-days", "1")
    assert dry["members"] == [] and dry["erased"] == 0  # everyone came today


def test_retention_erases_lapsed_members_and_a_dry_run_writes_nothing(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    from sync.hq.scrub import cli_operator, retention

    before = _state_of(chain.url)
    dry = retention(chain.hq, cli_operator("t", later), 30, True, later)
    assert dry["members"] == sorted([chain.member, chain.other]) and dry["erased"] == 0
    assert _state_of(chain.url) == before
    done = retention(chain.hq, cli_operator("t", later), 30, False, later)
    assert done["erased"] == 2
    _code, after = cli(None, "hq", "member", "export", "--db", chain.url, "--member", chain.member)
    assert after["name"] is None and after["erased"]["reason"].startswith("retention")
    again = retention(chain.hq, cli_operator("t", later), 30, False, later)
    assert again["members"] == []


def test_the_till_refuses_bad_consent_input_and_writes_nothing(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    ledger = Ledger(chain.home)
    try:
        head = ledger.store.journal().head(ledger.store.conn)
    finally:
        ledger.close()
    for args, status, error in (
        (("--member", chain.card, "--marketing", "maybe"), 2, "invalid_marketing"),
        (("--member", "9900390788616925", "--marketing", "no"), 3, "not_enrolled"),
        (("--member", chain.card), 2, "invalid_usage"),
    ):
        code, answer = cli(chain.home, "consent", *args)
        assert (code, answer.get("error")) == (status, error), (args, answer)
    ledger = Ledger(chain.home)
    try:
        assert ledger.store.journal().head(ledger.store.conn) == head
    finally:
        ledger.close()


def test_a_seal_opens_only_with_its_key() -> None:
    member = Member(
        member_id="D-1", name=NAME, phone_key="ab" * 32, birthday=BIRTHDAY, gender=None,
        district=DISTRICT, household=2, consent_marketing=1, enrolled_at="2026-01-01T00:00:00",
        enrolled_store="S1", enrolled_till="T1", enrolled_by=None,
    )  # fmt: skip
    key = new_key()
    sealed = seal(member, key)
    assert sealed.name is None and NAME not in str(sealed.sealed)
    assert disclosed(sealed, key).name == NAME
    with pytest.raises(Exception, match="does not open"):
        disclosed(sealed, new_key())
    with pytest.raises(InvalidInput):
        marketing_flag("maybe")


def test_hq_refuses_a_key_that_does_not_open_the_seal(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    ledger = Ledger(chain.home)
    try:
        entries = list(ledger.entries())
    finally:
        ledger.close()
    with pytest.raises(SyncError) as refused:
        Batch.from_json({"device": "d", "entries": [], "member_keys": {"x": 1}})
    assert refused.value.code == "malformed_batch"
    from sync.hq.db import HQStore as _Store  # noqa: F401 (the protocol the store meets)
    from sync.hq.ingest import entry_row
    from sync.hq.member_keys import take_keys

    enrol = next(entry for entry in entries if entry.kind == "enrol")
    with chain.hq.write() as tx, pytest.raises(SyncError) as wrong:
        member_id, typed = enrol.body["member"]["member_id"], readable(enrol.kind, enrol.body)
        assert isinstance(typed, Enrol)
        take_keys(tx, "d", [enrol], [entry_row(enrol)], {member_id: "A" * 44},
                  dt.datetime.now(dt.UTC), {0: typed})  # fmt: skip
    assert wrong.value.code == "bad_member_key"


def test_on_postgresql_erasure_leaves_no_row_and_the_export_nothing(
    tmp_path: Path, pg_database: str
) -> None:
    (tmp_path / "hq").mkdir()
    with pg_schema(pg_database) as url, _chain(tmp_path, url) as chain:
        code, before = cli(None, "hq", "member", "export", "--db", url, "--member", chain.member)
        assert code == 0
        assert before["name"] == NAME and {v["store"] for v in before["entries"]} == {
            "S001",
            "S002",
        }
        liability = _liability(url)
        args = ("--db", url, "--member", chain.member, "--reason", "asked")
        assert cli(None, "hq", "member", "erase", *args)[0] == 0
        _code, after = cli(None, "hq", "member", "export", "--db", url, "--member", chain.member)
        text = json.dumps(after)
        assert not [value for value in (*SECRETS, chain.phone_key) if value in text]
        assert after["balance"] == before["balance"]
        assert len(after["entries"]) == len(before["entries"])
        with chain.hq.read() as tx:
            rows = [
                json.dumps([list(map(str, row)) for row in tx.all(f"SELECT * FROM {table}")])
                for table in ("entries", "hq_member_keys", "ins_members", "hq_consents", "hq_audit")
            ]
        assert not [value for value in (*SECRETS, chain.phone_key) if any(value in r for r in rows)]
        assert cli(None, "hq", "verify", "--db", url)[0] == 0
        assert _liability(url) == liability
        for state in (chain.home, chain.away):
            assert cli(state, "sync")[0] == 0
            assert cli(state, "log", "verify")[0] == 0
        assert _found(_files(chain.home, chain.away), SECRETS) == []


def test_the_console_prints_the_export_for_a_viewer_and_nothing_personal_after_erasure(
    sqlite_chain: Chain,
) -> None:
    import requests

    from sync.hq.insight import operators

    chain = sqlite_chain
    now = dt.datetime.now(dt.UTC)
    issued = operators.issue(
        chain.hq, "viewer", now, dt.timedelta(days=1), login_link=True, role="viewer"
    )
    session = requests.Session()
    opened = session.get(
        chain.server.url + issued["console_login_path"], timeout=30, allow_redirects=False
    )
    assert opened.status_code == 303
    path = f"{chain.server.url}/console/members/{chain.member}/export"
    page = session.get(path, timeout=30)
    assert page.status_code == 200 and NAME in page.text and DISTRICT in page.text
    assert ">S002<" in page.text and ">S001<" in page.text
    assert requests.get(path, timeout=30, allow_redirects=False).status_code in (302, 303, 401)
    unknown = session.get(f"{chain.server.url}/console/members/NOPE-1/export", timeout=30)
    assert unknown.status_code == 404 and "unknown_member" in unknown.text
    assert cli(None, "hq", "member", "erase", "--db", chain.url, "--member", chain.member,
               "--reason", "asked")[0] == 0  # fmt: skip
    after = session.get(path, timeout=30)
    assert after.status_code == 200 and "erased" in after.text
    assert not [value for value in SECRETS if value in after.text]
