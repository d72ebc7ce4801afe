"""The supervisor limit on refunds counts the receipt's refunded total (issue #12):
five refunds of 200.00 against one 1000.00 receipt are not five small refunds.

Through the ledger (a real SQLite file) and through the running agent's local API,
where a supervisor's PIN is checked."""

from __future__ import annotations

import pytest

from agent.client import AgentClient, AgentError
from agent.errors import Refused
from agent.fields import Line
from agent.ledger import Ledger
from tests.conftest import journal_count
from tests.test_ui_support import SUPERVISOR, SUPERVISOR_PIN, add_supervisor
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill

# The shipped rules: refunds above 200.00 need a supervisor.
LIMIT = 200_00


def _five_items(ledger: Ledger, receipt: str) -> None:
    member = ledger.enrol(name="Ann", phone="0612345678").member_id
    ledger.earn(member, receipt, lines=(Line("goods", 5, 1000_00),))


def test_split_refunds_add_up_to_the_supervisor_limit(ledger: Ledger) -> None:
    _five_items(ledger, "R1")
    one = (Line("goods", 1, LIMIT),)
    # The first refund is exactly at the limit: a cashier may do it alone.
    assert ledger.refund("R1", one, supervised=False).as_json()["refunded"] == "200.00"
    before = journal_count(ledger)
    for _ in range(2):  # the attack: the same small refund again, and again
        with pytest.raises(Refused) as caught:
            ledger.refund("R1", one, supervised=False)
        assert caught.value.code == "supervisor_required"
        assert "400.00" in caught.value.message and "200.00" in caught.value.message
    assert journal_count(ledger) == before
    # A supervisor can go on; the receipt's total is then fully refunded.
    for _ in range(4):
        ledger.refund("R1", one, supervised=True)
    refunded = ledger.store.conn.execute(
        "SELECT refunded_amount FROM receipts WHERE op = 'earn' AND receipt = 'R1'"
    ).fetchone()[0]
    assert refunded == 1000_00


def test_a_whole_refund_after_a_small_one_counts_both(ledger: Ledger) -> None:
    _five_items(ledger, "R2")
    ledger.refund("R2", (Line("goods", 1, 50_00),), supervised=False)
    with pytest.raises(Refused) as caught:
        ledger.refund("R2", supervised=False)  # the rest: 800.00, 1000.00 in all
    assert caught.value.code == "supervisor_required"


def test_small_refunds_under_the_limit_in_total_need_no_pin(ledger: Ledger) -> None:
    _five_items(ledger, "R3")
    for _ in range(4):
        ledger.refund("R3", (Line("goods", 1, 50_00),), supervised=False)
    with pytest.raises(Refused):
        ledger.refund("R3", (Line("goods", 1, 1),), supervised=False)


@pytest.mark.timeout(120)
def test_split_refunds_over_the_local_api_need_a_supervisor(till: SimulatedTill) -> None:
    add_supervisor(till)
    client: AgentClient = till.client
    client.post(
        "/v1/earn",
        {
            "member": DEMO_CARD,
            "receipt": "POS-9",
            "lines": [{"category": "goods", "qty": 5, "amount": "1000.00"}],
        },
    )
    one = {"receipt": "POS-9", "lines": [{"category": "goods", "qty": 1, "amount": "200.00"}]}
    assert client.post("/v1/refund", one)["refunded"] == "200.00"
    head = client.get("/v1/status")["journal_head"]["seq"]
    with pytest.raises(AgentError) as caught:
        client.post("/v1/refund", one)
    assert (caught.value.http_status, caught.value.code) == (409, "supervisor_required")
    with pytest.raises(AgentError) as caught:
        client.post("/v1/refund", {**one, "supervisor": SUPERVISOR, "pin": "0000"})
    assert caught.value.code == "bad_pin"
    assert client.get("/v1/status")["journal_head"]["seq"] == head
    done = client.post("/v1/refund", {**one, "supervisor": SUPERVISOR, "pin": SUPERVISOR_PIN})
    assert done["refunded"] == "200.00"
    assert client.get("/v1/status")["journal_head"]["seq"] == head + 1
