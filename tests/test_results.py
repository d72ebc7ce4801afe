"""The ledger's typed answers (agent.results): their JSON at the edges is the
contract's, and the answer kept for a replay is stored byte for byte as before."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import results
from agent.errors import LedgerError
from agent.ledger import Ledger
from agent.money import format_amount
from tests.conftest import Clock

CARD = "9900835840532866"
ANSWERS = [
    cls
    for cls in vars(results).values()
    if isinstance(cls, type) and issubclass(cls, results.Answer) and cls is not results.Answer
]


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_money_kept_in_an_answer_reads_back_exactly(minor: int) -> None:
    assert results.minor_units(format_amount(minor)) == minor


def test_every_answer_is_frozen_and_only_money_is_money() -> None:
    assert len(ANSWERS) >= 12
    for cls in ANSWERS:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert dataclasses.is_dataclass(cls) and params.frozen, cls
        # Money is the three fields the contract prints as decimal strings.
        money = {item.name for item in dataclasses.fields(cls) if item.metadata.get("money")}
        assert money <= {"value", "redeemable_value", "refunded"}, cls


def test_an_earn_answers_the_contract_shape_and_keeps_it_for_the_replay(
    ledger: Ledger, clock: Clock
) -> None:
    # Born in March: the birthday month doubles the points (the clock is in March).
    enrolled = ledger.enrol(name="Ann", phone="5551234567", card=CARD, birthday="1990-03-02")
    member = enrolled.member_id
    earned = ledger.earn(CARD, "R1", amount=123456)
    assert earned == results.Earned(
        member_id=member,
        receipt="R1",
        points=2469,
        balance=2569,
        tier="basic",
        redeemable=2000,
        redeemable_value=2000,
        replayed=False,
    )
    answer = earned.as_json()
    # The keys in the order the command line and the local API have always printed.
    assert list(answer.items()) == [
        ("member_id", member),
        ("receipt", "R1"),
        ("points", 2469),
        ("balance", 2569),
        ("tier", "basic"),
        ("redeemable", 2000),
        ("redeemable_value", "20.00"),
        ("replayed", False),
    ]
    # Kept as it always was: sorted keys, money as text, in the receipt row and the
    # signed entry.
    with ledger.store.snapshot() as conn:
        (stored,) = conn.execute("SELECT result FROM receipts WHERE op = 'earn'").fetchone()
    assert stored == (
        f'{{"balance": 2569, "member_id": "{member}", "points": 2469, "receipt": "R1", '
        '"redeemable": 2000, "redeemable_value": "20.00", "replayed": false, "tier": "basic"}'
    )
    entry = ledger.journal.last()
    assert entry is not None and entry.body["result"] == answer
    # A replay answers the same, read back from what was kept.
    clock.advance(days=3)
    again = ledger.earn(CARD, "R1", amount=123456)
    assert again == dataclasses.replace(earned, replayed=True)
    assert again.as_json() == {**answer, "replayed": True}


def test_a_redemption_replays_its_money_as_it_was(ledger: Ledger) -> None:
    ledger.enrol(name="Ann", phone="5551234567", card=CARD)
    ledger.earn(CARD, "R1", amount=50000)
    first = ledger.redeem(CARD, "R1", 250)
    assert first.as_json()["value"] == "2.50" and first.value == 250
    again = ledger.redeem(CARD, "R1", 250)
    assert again == dataclasses.replace(first, replayed=True)
    assert json.dumps(again.as_json()) == json.dumps({**first.as_json(), "replayed": True})


def test_a_kept_answer_that_cannot_be_read_back_is_named(ledger: Ledger) -> None:
    ledger.enrol(name="Ann", phone="5551234567", card=CARD)
    ledger.earn(CARD, "R1", amount=1000)
    with ledger.store.transaction() as conn:
        conn.execute("UPDATE receipts SET result = '{\"points\": 10}' WHERE op = 'earn'")
    with pytest.raises(LedgerError) as caught:
        ledger.earn(CARD, "R1", amount=1000)
    assert caught.value.code == "malformed_result"
    assert "Earned" in caught.value.message


def test_the_member_view_nests_its_offers_as_objects(ledger: Ledger) -> None:
    ledger.enrol(name="Ann", phone="5551234567", card=CARD, birthday="1990-03-02")
    view = ledger.member(CARD)
    shown = view.as_json()
    standing = ledger.balance(CARD).as_json()
    assert list(shown)[: len(standing)] == list(standing)
    assert {key: shown[key] for key in standing} == standing
    assert (shown["name"], shown["birthday_month"], shown["offers"]) == ("Ann", True, [])
    offer = results.OfferShown("X1", "Coffee", "gift", "0", "2026-12-31")
    with_offer = dataclasses.replace(view, offers=(offer,))
    assert with_offer.as_json()["offers"] == [
        {
            "offer_id": "X1",
            "title": "Coffee",
            "kind": "gift",
            "value": "0",
            "valid_to": "2026-12-31",
        }
    ]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(ANSWERS).flatmap(st.builds))
def test_the_generated_json_is_the_field_loops(answer: results.Answer) -> None:
    """``as_json`` (a writer generated per class) against the field loop it unrolls:
    the same keys, in order, and values."""
    shown = answer.as_json()
    reference = answer._loop_as_json()
    if isinstance(answer, results._OfferIfAny) and reference.get("offer") is None:
        reference.pop("offer", None)
    assert list(shown.items()) == list(reference.items())
