"""``tillpoints demo`` until the cashier UI lands (issue #7): one till's day on the
command line, through the same ledger calls the agent makes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.audit import export_log, verify_file, verify_ledger
from agent.errors import LedgerError
from agent.fields import Line
from agent.ledger import Ledger

CARD = "9900835840532866"


def run(say: Callable[[str], None] = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tillpoints-demo-") as directory:
        state = Path(directory) / "till"
        ledger = Ledger.init(state, "S001", "T01")
        try:
            return _day(ledger, Path(directory), say)
        finally:
            ledger.close()


def _day(ledger: Ledger, directory: Path, say: Callable[[str], None]) -> dict[str, Any]:
    say(f"Till S001/T01 initialised: device {ledger.device_id}, state {ledger.state_dir}")
    ann = ledger.enrol(
        name="Ann Lee",
        phone="+44 7700 900123",
        birthday="1988-07-14",
        card=CARD,
        consent_marketing=True,
        staff="c1",
    )
    say(
        f"Enrolled Ann Lee with card {ann['card']}: member {ann['member_id']}, "
        f"{ann['balance']} welcome points"
    )
    wei = ledger.enrol(name="王伟", phone="13800138000", staff="c1")
    say(f"Enrolled 王伟 without a card: e-card {wei['card']} issued")
    sale = ledger.earn(
        CARD,
        "RCPT-1001",
        lines=(Line("grocery", 3, 2450), Line("fresh", 1, 899), Line("tobacco", 1, 1200)),
        staff="c1",
    )
    say(
        f"Receipt RCPT-1001 (grocery 24.50, fresh 8.99, tobacco 12.00): "
        f"+{sale['points']} points, balance {sale['balance']}"
    )
    again = ledger.earn(
        CARD,
        "RCPT-1001",
        lines=(Line("grocery", 3, 2450), Line("fresh", 1, 899), Line("tobacco", 1, 1200)),
        staff="c1",
    )
    say(f"The POS sends RCPT-1001 again: replayed={again['replayed']}, nothing written")
    redeem = ledger.redeem(CARD, "RCPT-1002", 100, amount=1500, staff="c1")
    say(f"Receipt RCPT-1002: 100 points pay {redeem['value']}, balance {redeem['balance']}")
    try:
        ledger.redeem(CARD, "RCPT-1003", 5000, staff="c1")
    except LedgerError as error:
        say(f"Redeeming 5000 points is refused: {error.code} ({error.message})")
    refund = ledger.refund("RCPT-1001", (Line("fresh", 1, 899),), staff="c1")
    say(
        f"Fresh line of RCPT-1001 refunded: points {refund['points']:+d}, "
        f"balance {refund['balance']}"
    )
    balance = ledger.balance(CARD)
    say(
        f"Ann's balance: {balance['balance']} points worth {balance['value']}, "
        f"tier {balance['tier']}"
    )
    report = verify_ledger(ledger)
    say(f"log verify: ok={report.ok}, {report.entries} entries, head {report.head[:16]}...")
    exported = export_log(ledger, directory / "journal.jsonl")
    elsewhere = verify_file(directory / "journal.jsonl", ledger.public_key)
    say(
        f"Exported {exported['entries']} entries; checked with the public key alone: "
        f"ok={elsewhere.ok}"
    )
    return {"entries": report.entries, "ok": report.ok and elsewhere.ok}
