"""HQ's suggestions as the till holds them and what a member answered (issue 15):
``agent.suggestions`` and ``Ledger.record_suggestion``, with a clock the test controls."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.audit import verify_ledger
from agent.errors import InvalidInput, Refused
from agent.ledger import Ledger
from agent.suggestions import apply_suggestions, store_suggestions, suggestions_for
from sync.till_sync import apply_delta
from tests import suggestion_helpers
from tests.conftest import Clock, journal_count

CARD_A = "9900835840532866"
CARD_B = "9900568732746027"


def item(member: str, **overrides: Any) -> dict[str, Any]:
    return suggestion_helpers.item(member, **{"suggestion_id": "sg-birthday-1", **overrides})


def hold(ledger: Ledger, *items: dict[str, Any]) -> int:
    with ledger.store.transaction() as conn:
        return apply_suggestions(conn, {"suggestions": list(items)})


def today(clock: Clock) -> dt.date:
    return clock.now.date()


def test_the_counter_shows_the_two_that_matter_most(ledger: Ledger, clock: Clock) -> None:
    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    hold(
        ledger,
        item(member, suggestion_id="s3", reason="lapsed", rank=3),
        item(member, suggestion_id="s1", rank=1),
        item(member, suggestion_id="s2", reason="expiring_points", rank=2),
        item(member, suggestion_id="old", rank=0, valid_to="2000-01-01"),
    )
    with ledger.store.transaction() as conn:
        shown = suggestions_for(conn, member, today(clock))
    assert [(s.id, s.reason) for s in shown] == [("s1", "birthday"), ("s2", "expiring_points")]
    assert "offer" not in shown[0].as_json()


def test_a_suggestion_shows_its_offer_only_while_the_counter_can_take_it(
    ledger: Ledger, clock: Clock
) -> None:
    from agent.offers import offers_for

    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    with ledger.store.transaction() as conn:
        conn.execute(
            "INSERT INTO hq_offers VALUES ('BDAY-1', ?, 'suggestion', 'gift', 'mug', 'A mug', "
            "'2026-01-01', '2099-12-31')",
            (member,),
        )
    hold(ledger, item(member, offer_id="BDAY-1"))
    with ledger.store.transaction() as conn:
        offers = offers_for(conn, member, today(clock))
        shown = suggestions_for(conn, member, today(clock), offers)
    assert shown[0].as_json()["offer"]["offer_id"] == "BDAY-1"
    ledger.earn(CARD_A, "R1", amount=1000)
    ledger.take_offer(CARD_A, "BDAY-1", "R1")
    with ledger.store.transaction() as conn:
        offers = offers_for(conn, member, today(clock))
        assert suggestions_for(conn, member, today(clock), offers)[0].offer is None


def test_an_answer_is_journaled_once_and_the_suggestion_leaves_the_counter(
    ledger: Ledger, clock: Clock
) -> None:
    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    hold(ledger, item(member))
    before = journal_count(ledger)
    answer = ledger.record_suggestion(CARD_A, "sg-birthday-1", "Accepted", staff="E1")
    assert answer.as_json() == {
        "member_id": member,
        "suggestion": "sg-birthday-1",
        "reason": "birthday",
        "outcome": "accepted",
        "replayed": False,
    }
    assert journal_count(ledger) == before + 1
    last = list(ledger.entries())[-1]
    assert last.kind == "suggestion_answer" and last.body["outcome"] == "accepted"
    again = ledger.record_suggestion(member, "sg-birthday-1", "accepted")
    assert again.replayed and journal_count(ledger) == before + 1
    with pytest.raises(Refused) as caught:
        ledger.record_suggestion(member, "sg-birthday-1", "declined")
    assert caught.value.code == "already_recorded"
    assert journal_count(ledger) == before + 1
    with ledger.store.transaction() as conn:
        assert suggestions_for(conn, member, today(clock)) == ()
    assert verify_ledger(ledger).ok


@pytest.mark.parametrize(
    ("suggestion", "outcome", "code"),
    [
        ("sg-birthday-1", "maybe", "invalid_outcome"),
        ("sg-birthday-1", "", "invalid_outcome"),
        ("bad id!", "accepted", "invalid_suggestion"),
        ("", "accepted", "invalid_suggestion"),
    ],
)
def test_bad_answers_are_refused_with_nothing_written(
    ledger: Ledger, suggestion: str, outcome: str, code: str
) -> None:
    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    hold(ledger, item(member))
    before = journal_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        ledger.record_suggestion(member, suggestion, outcome)
    assert caught.value.code == code
    assert journal_count(ledger) == before


def test_another_members_or_an_unknown_suggestion_is_refused(ledger: Ledger) -> None:
    first = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    ledger.enrol(name="B", phone="5550002", card=CARD_B)
    hold(ledger, item(first))
    before = journal_count(ledger)
    for ref, suggestion in ((CARD_B, "sg-birthday-1"), (CARD_A, "sg-nothing")):
        with pytest.raises(Refused) as caught:
            ledger.record_suggestion(ref, suggestion, "later")
        assert caught.value.code == "unknown_suggestion"
    assert journal_count(ledger) == before


def test_consent_withdrawn_here_stops_the_suggestions_at_once(ledger: Ledger, clock: Clock) -> None:
    member = ledger.enrol(name="A", phone="5550001", card=CARD_A, consent_marketing=True)
    hold(ledger, item(member.member_id))
    ledger.consent(CARD_A, marketing=False)
    with ledger.store.transaction() as conn:
        assert suggestions_for(conn, member.member_id, today(clock)) == ()
        assert store_suggestions(conn, "S001", today(clock)) == ()
    ledger.consent(CARD_A, marketing=True)
    with ledger.store.transaction() as conn:
        assert len(suggestions_for(conn, member.member_id, today(clock))) == 1


def test_the_store_list_holds_this_stores_members(ledger: Ledger, clock: Clock) -> None:
    first = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    hold(
        ledger,
        item(first, suggestion_id="here"),
        item("elsewhere-1", suggestion_id="there", home_store="S002"),
    )
    with ledger.store.transaction() as conn:
        listed = store_suggestions(conn, "S001", today(clock))
    assert [(s.suggestion_id, s.last_visit) for s in listed] == [("here", "2026-11-20")]


@pytest.mark.parametrize(
    "bad",
    [
        "not a list",
        ["not an object"],
        [item("m-1", reason="gossip")],
        [item("m-1", suggestion_id="bad id")],
        [item("m-1", rank="1")],
        [item("m-1", text="")],
        [item("m-1", text="x" * 201)],
        [item("m-1", valid_to="someday")],
        [{"suggestion_id": "s1"}],
    ],
)
def test_a_malformed_list_is_refused_and_the_old_one_kept(ledger: Ledger, bad: Any) -> None:
    hold(ledger, item("m-1", suggestion_id="kept"))
    with pytest.raises((ValueError, KeyError)), ledger.store.transaction() as conn:
        apply_suggestions(conn, {"suggestions": bad})
    with ledger.store.transaction() as conn:
        rows = conn.execute("SELECT suggestion_id FROM hq_suggestions").fetchall()
    assert rows == [("kept",)]


def test_a_page_without_the_key_keeps_the_list_and_an_erasure_drops_the_member(
    ledger: Ledger,
) -> None:
    hold(ledger, item("m-1", suggestion_id="a"), item("m-2", suggestion_id="b"))
    page = {
        "cursor": 1,
        "included_seq": 0,
        "hq_time": "2026-12-01T00:00:00Z",
        "members": [],
        "cards": [],
        "balances": [],
        "erased": ["m-1"],
    }
    with ledger.store.transaction() as conn:
        apply_delta(conn, page)
        rows = conn.execute("SELECT suggestion_id FROM hq_suggestions").fetchall()
    assert rows == [("b",)]


def test_the_migration_made_the_tables(ledger: Ledger) -> None:
    with ledger.store.transaction() as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"hq_suggestions", "journal_suggestion_answer", "journal_consent"} <= names


def test_a_member_of_another_store_is_answered_for_by_the_suggestions_member_id(
    ledger: Ledger,
) -> None:
    """The store's list names members enrolled elsewhere, whom this till knows by
    card only: the suggestion's own member id is enough to record the answer."""
    hold(ledger, item("a1b2c3d4e5f6-9", suggestion_id="away"))
    answer = ledger.record_suggestion("a1b2c3d4e5f6-9", "away", "declined")
    assert (answer.member_id, answer.outcome) == ("a1b2c3d4e5f6-9", "declined")
    with pytest.raises(InvalidInput) as caught:
        ledger.record_suggestion("a1b2c3d4e5f6-8", "away", "declined")
    assert caught.value.code == "unknown_member"


def test_the_standing_and_the_member_view_carry_the_suggestions(
    ledger: Ledger, clock: Clock
) -> None:
    from agent.suggestion_words import REASON_WORDS, in_words
    from agent.suggestions import REASONS

    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    assert ledger.balance(CARD_A).suggestions == ()
    assert ledger.member(CARD_A).as_json()["suggestions"] == []
    with ledger.store.transaction() as conn:
        conn.execute(
            "INSERT INTO hq_offers VALUES ('BDAY-1', ?, 'suggestion', 'gift', 'mug', 'A mug', "
            "'2026-01-01', '2099-12-31')",
            (member,),
        )
    hold(ledger, item(member, offer_id="BDAY-1"), item(member, suggestion_id="s2", rank=2))
    shown = ledger.member(CARD_A).as_json()["suggestions"]
    assert [s["id"] for s in shown] == ["sg-birthday-1", "s2"]
    assert shown[0]["offer"]["title"] == "A mug" and "offer" not in shown[1]
    assert ledger.balance(member).as_json()["suggestions"] == shown
    assert in_words(shown[0]).startswith("Birthday coming: Birthday in 5 days")
    assert in_words(shown[0]).endswith(" · offer: A mug")
    assert set(REASON_WORDS) == set(REASONS)
