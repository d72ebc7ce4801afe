"""The command line as docs/contract.md writes it: JSON shapes, exit statuses, stable
error codes, and nothing written when a command fails."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.codes import make_dynamic_code
from tests.conftest import REPO
from tests.secrets_helpers import give_qr_secret
from tests.suggestion_helpers import hold, item
from tillpoints.cli import _commands, build_parser

CARD = "9900835840532866"
OTHER = "9900568732746027"


def entries(tmp_path: Path) -> int:
    db = tmp_path / "till" / "ledger.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    finally:
        conn.close()


ANSWER = ("suggestion", "record", "--member", CARD, "--suggestion")


@pytest.fixture
def till(cli, tmp_path: Path):
    assert cli("init", "--store", "S001", "--till", "T01").status == 0
    enrolled = cli("enroll", "--name", "Ann", "--phone", "5551234567", "--card", CARD)
    assert enrolled.status == 0
    hold(tmp_path / "till", item(enrolled.json["member_id"]))
    return cli


def test_init_answers_with_the_contract_keys(cli) -> None:
    result = cli("init", "--store", "S001", "--till", "T01")
    assert result.status == 0
    assert {"store", "till", "device_id", "public_key"} <= set(result.json)


def test_commands_before_init_fail_cleanly(cli, tmp_path: Path) -> None:
    for argv in (
        ("earn", "--member", CARD, "--receipt", "R1", "--amount", "1.00"),
        ("balance", "--member", CARD),
        ("log", "verify"),
    ):
        result = cli(*argv)
        assert result.status == 1 and result.json["error"] == "not_initialised"
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "till" / "ledger.db").exists()


def test_init_twice_is_refused(till) -> None:
    result = till("init", "--store", "S002", "--till", "T02")
    assert result.status == 3 and result.json["error"] == "already_initialised"


def test_contract_shapes(till) -> None:
    earn = till("earn", "--member", CARD, "--receipt", "R1", "--line", "grocery:2:12.30")
    assert earn.status == 0
    assert {"member_id", "receipt", "points", "balance", "replayed"} <= set(earn.json)
    assert earn.json["points"] == 12 and earn.json["replayed"] is False
    again = till("earn", "--member", CARD, "--receipt", "R1", "--line", "grocery:2:12.30")
    assert again.json["replayed"] is True and again.json["points"] == 12
    redeem = till("redeem", "--member", CARD, "--receipt", "R2", "--points", "100")
    assert {"member_id", "receipt", "points", "value", "balance"} <= set(redeem.json)
    assert redeem.json["value"] == "1.00"
    refund = till("refund", "--receipt", "R1", "--line", "grocery:1:6.15")
    assert {"member_id", "receipt", "points", "balance"} <= set(refund.json)
    assert refund.json["points"] == -6
    balance = till("balance", "--member", CARD)
    assert {"member_id", "balance", "tier"} <= set(balance.json)
    lookup = till("lookup", "--phone", "555 123 4567")
    assert lookup.json["card"] == CARD
    replaced = till("card", "replace", "--member", CARD, "--card", OTHER)
    assert replaced.json["card"] == OTHER
    blocked = till("earn", "--member", CARD, "--receipt", "R9", "--amount", "1.00")
    assert blocked.status == 3 and blocked.json["error"] == "card_blocked"


@pytest.mark.parametrize(
    ("argv", "status", "code"),
    [
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "abc"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "-1"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "0.001"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "1e9999"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "NaN"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "inf"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "１２"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "1,000"), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--amount", "9" * 40), 2, "invalid_amount"),
        (("earn", "--member", CARD, "--receipt", "R1", "--line", "grocery:2"), 2, "invalid_line"),
        (
            ("earn", "--member", CARD, "--receipt", "R1", "--line", "gro cery:1:1.00"),
            2,
            "invalid_line",
        ),
        (("earn", "--member", CARD, "--receipt", "R1", "--line", "food:0:1.00"), 2, "invalid_line"),
        (
            ("earn", "--member", CARD, "--receipt", "R1", "--line", "food:1:1.005"),
            2,
            "invalid_line",
        ),
        (("earn", "--member", CARD, "--receipt", "R 1", "--amount", "1.00"), 2, "invalid_receipt"),
        (
            ("earn", "--member", "9900835840532869", "--receipt", "R1", "--amount", "1.00"),
            2,
            "invalid_code",
        ),
        (
            ("earn", "--member", "4111111111111111", "--receipt", "R1", "--amount", "1.00"),
            2,
            "payment_card",
        ),
        (("earn", "--member", "nobody", "--receipt", "R1", "--amount", "1.00"), 2, "invalid_card"),
        (("earn", "--member", CARD, "--receipt", "R1"), 2, "invalid_usage"),
        (("redeem", "--member", CARD, "--receipt", "P", "--points", "0"), 2, "invalid_points"),
        (("redeem", "--member", CARD, "--receipt", "P", "--points", "-5"), 2, "invalid_points"),
        (("redeem", "--member", CARD, "--receipt", "P", "--points", "2.5"), 2, "invalid_points"),
        (
            ("redeem", "--member", CARD, "--receipt", "P", "--points", "10" * 10),
            2,
            "invalid_points",
        ),
        (
            ("redeem", "--member", CARD, "--receipt", "P", "--points", "101"),
            3,
            "insufficient_points",
        ),
        (("refund", "--receipt", "UNKNOWN"), 3, "unknown_receipt"),
        (("enroll", "--name", "B", "--phone", "5551234567"), 3, "duplicate_phone"),
        (
            ("enroll", "--name", "B", "--phone", "555", "--birthday", "2001-01-01"),
            2,
            "invalid_phone",
        ),
        (
            ("enroll", "--name", "B", "--phone", "5550000", "--birthday", "2999-01-01"),
            2,
            "invalid_birthday",
        ),
        (("enroll", "--name", "", "--phone", "5550000"), 2, "invalid_name"),
        (
            ("enroll", "--name", "B", "--phone", "5550000", "--card", "4111111111111111"),
            2,
            "payment_card",
        ),
        (("lookup", "--phone", "5550000"), 3, "unknown_phone"),
        (("frobnicate",), 2, "invalid_usage"),
        ((*ANSWER, "sg-1", "--outcome", "maybe"), 2, "invalid_outcome"),
        ((*ANSWER, "sg 1", "--outcome", "later"), 2, "invalid_suggestion"),
        ((*ANSWER, "sg-unknown", "--outcome", "later"), 3, "unknown_suggestion"),
        ((*ANSWER, "sg-1", "--outcome", "later", "--staff", "c 1"), 2, "invalid_staff"),
        # A card not enrolled here has no suggestions; a mistyped one is no card.
        (
            (
                "suggestion",
                "record",
                "--member",
                OTHER,
                "--suggestion",
                "sg-1",
                "--outcome",
                "later",
            ),
            3,
            "unknown_suggestion",
        ),
        (
            (
                "suggestion",
                "record",
                "--member",
                "9900835840532869",
                "--suggestion",
                "sg-1",
                "--outcome",
                "later",
            ),
            2,
            "invalid_code",
        ),
        (("suggestion", "list", "--store", "S 1"), 2, "invalid_store"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    till, tmp_path: Path, argv: tuple[str, ...], status: int, code: str
) -> None:
    before = entries(tmp_path)
    result = till(*argv)
    assert (result.status, result.json["error"]) == (status, code)
    assert result.json["message"]
    assert "Traceback" not in result.stderr
    assert "4111111111111111" not in result.json["message"] + result.stderr
    assert entries(tmp_path) == before


def test_log_verify_failure_shape(till, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "till" / "ledger.db")
    # The name is sealed (issue 17): the enrolment's day is in the clear.
    conn.execute("UPDATE journal SET body = json_set(body, '$.day', '1999-01-01') WHERE seq = 2")
    conn.commit()
    conn.close()
    result = till("log", "verify")
    assert result.status == 4
    assert result.json["ok"] is False and result.json["first_bad_seq"] == 2
    assert result.json["reason"] and result.json["error"] == "log_tampered"


def test_export_and_verify_on_another_machine(till, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    exported = till("log", "export", "--out", str(out))
    assert exported.status == 0 and exported.json["entries"] == 2
    public = tmp_path / "device.pub"
    conn = sqlite3.connect(tmp_path / "till" / "ledger.db")
    public.write_text(conn.execute("SELECT value FROM meta WHERE key='public_key'").fetchone()[0])
    conn.close()
    checked = till("log", "verify", "--file", str(out), "--public-key", str(public))
    assert checked.status == 0
    assert checked.json == {"ok": True, "entries": 2, "head": exported.json["head"]}
    bad = till("log", "verify", "--file", str(out), "--public-key", "bm90IGEga2V5")
    assert bad.status == 2 and bad.json["error"] == "invalid_public_key"


def test_human_output_has_no_traceback_and_no_json() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tillpoints.cli",
            "--state",
            "/nonexistent/x",
            "balance",
            "--member",
            CARD,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and "tillpoints init" in proc.stderr


def contract_commands() -> list[str]:
    """The command names of the contract's tables: the leading lower-case words of each
    row's first code span (`card replace --member REF ...` is `card replace`)."""
    text = (REPO / "docs" / "contract.md").read_text()
    spans = re.findall(r"^\| `([^`]*)`", text, re.M)
    return sorted(
        {m.group(0) for span in spans if (m := re.match(r"[a-z][a-z-]*( [a-z][a-z-]*)*", span))}
    )


# Commands of the contract that open issues bring (name -> issue); this list shrinks to nothing.
PLANNED: dict[str, int] = {}


def test_every_contract_command_exists_and_is_in_the_readme() -> None:
    names = contract_commands()
    assert "earn" in names and "card replace" in names and "log verify" in names
    parser = build_parser(_commands())
    implemented = set()
    for command in _commands():
        implemented.add(command.name)
    readme = (REPO / "README.md").read_text()
    for name in names:
        if name in implemented:
            assert f"tillpoints {name}" in readme, f"README does not document {name}"
        else:
            assert name in PLANNED, f"{name} is in docs/contract.md but neither built nor planned"
    assert parser.prog == "tillpoints"


def test_qr_codes_work_as_member_references(till, tmp_path: Path) -> None:
    give_qr_secret(tmp_path / "till", b"a-chain-secret-for-tests")
    code = till("qr", "--member", CARD)
    assert code.status == 0 and code.json["payload"].startswith("TP1.")
    assert code.json["valid_until"].endswith("Z")
    earn = till("earn", "--member", code.json["payload"], "--receipt", "Q1", "--amount", "5.00")
    assert earn.status == 0 and earn.json["points"] == 5
    parts = code.json["payload"].split(".")
    forged = ".".join([*parts[:3], "A" * len(parts[3])])
    bad = till("earn", "--member", forged, "--receipt", "Q2", "--amount", "5.00")
    assert (bad.status, bad.json["error"]) == (2, "invalid_code")
    stale = ".".join([parts[0], parts[1], str(int(parts[2]) - 10), parts[3]])
    assert till("balance", "--member", stale).json["error"] == "invalid_code"
    old, _ = make_dynamic_code(CARD, b"a-chain-secret-for-tests", time.time() - 300)
    expired = till("earn", "--member", old, "--receipt", "Q3", "--amount", "5.00")
    assert (expired.status, expired.json["error"]) == (2, "expired_code")
    static = till("balance", "--member", "]Q1" + CARD)
    assert static.status == 0


def test_qr_without_a_secret_says_so(till) -> None:
    result = till("qr", "--member", CARD)
    assert (result.status, result.json["error"]) == (1, "qr_not_configured")


def test_a_suggestion_is_shown_answered_once_and_listed(till, tmp_path: Path) -> None:
    balance = till("balance", "--member", CARD)
    member = balance.json["member_id"]
    assert balance.json["suggestions"] == [
        {
            "id": "sg-1",
            "reason": "birthday",
            "text": "Birthday in 5 days: wish them well",
            "valid_to": "2099-12-31",
        }
    ]
    listed = till("suggestion", "list")
    assert listed.status == 0 and listed.json["store"] == "S001"
    (line,) = listed.json["suggestions"]
    assert (line["id"], line["member_id"], line["name"]) == ("sg-1", member, "Ann")
    assert line["last_visit"] == "2026-11-20" and "phone" not in str(line)
    before = entries(tmp_path)
    answer = till(*ANSWER, "sg-1", "--outcome", "accepted", "--staff", "c17")
    assert answer.status == 0 and entries(tmp_path) == before + 1
    assert {"member_id": member, "suggestion": "sg-1", "outcome": "accepted"}.items() <= (
        answer.json.items()
    )
    again = till(*ANSWER, "sg-1", "--outcome", "ACCEPTED")
    assert again.status == 0 and again.json["replayed"] is True
    other = till(*ANSWER, "sg-1", "--outcome", "declined")
    assert (other.status, other.json["error"]) == (3, "already_recorded")
    assert entries(tmp_path) == before + 1
    assert till("balance", "--member", CARD).json["suggestions"] == []
    assert till("suggestion", "list").json["suggestions"] == []
    assert till("suggestion", "list", "--store", "S002").json["suggestions"] == []


def test_balance_and_the_list_say_suggestions_in_plain_words(
    till, capsys: pytest.CaptureFixture[str]
) -> None:
    from tillpoints.cli import main

    capsys.readouterr()
    assert main(["balance", "--member", CARD]) == 0
    said = capsys.readouterr().out
    assert "Birthday coming: Birthday in 5 days: wish them well (suggestion sg-1)" in said
    assert "{" not in said and "tillpoints suggestion record" in said
    assert main(["suggestion", "list"]) == 0
    listed = capsys.readouterr().out
    assert "Ann (" in listed and "last visit 2026-11-20" in listed and "{" not in listed
