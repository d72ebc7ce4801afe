"""HQ's suggestions through the real agent's local API (issue 15): the member view and
the scan event carry them, ``POST /v1/suggestions`` records an answer once, ``GET
/v1/suggestions`` is the store's list."""

from __future__ import annotations

import queue
from typing import Any

import pytest

from agent.client import AgentError
from tests.suggestion_helpers import hold, item
from tests.test_agent_daemon import collect_events, next_event
from tests.test_api_hostile import counts, encode, post
from tillpoints.simulated_till import DEMO_CARD as CARD
from tillpoints.simulated_till import SimulatedTill

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def member(till: SimulatedTill) -> str:
    member_id = str(till.client.get(f"/v1/members/{CARD}")["member_id"])
    hold(
        till.state,
        item(member_id, "sg-1"),
        item(member_id, "sg-2", reason="expiring_points", text="100 points expire soon", rank=2),
        item(member_id, "sg-3", reason="lapsed", text="Welcome back", rank=3),
    )
    return member_id


def test_the_member_and_the_scan_event_carry_the_two_that_matter_most(
    till: SimulatedTill, member: str
) -> None:
    shown = till.client.get(f"/v1/members/{CARD}")["suggestions"]
    assert [(s["id"], s["reason"]) for s in shown] == [
        ("sg-1", "birthday"),
        ("sg-2", "expiring_points"),
    ]
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    collect_events(till.client, events)
    next_event(events, "hello")
    till.swipe(f";{CARD}=3012?\r".encode())
    scan = next_event(events, "scan")
    assert scan["member"]["suggestions"] == shown


def test_an_answer_is_recorded_once_and_a_different_one_is_refused(
    till: SimulatedTill, member: str
) -> None:
    before = counts(till)
    body = {"member": CARD, "suggestion": "sg-1", "outcome": "accepted", "staff": "c17"}
    answer = till.client.post("/v1/suggestions", body)
    assert {"member_id": member, "suggestion": "sg-1", "outcome": "accepted"}.items() <= (
        answer.items()
    )
    assert answer["replayed"] is False and counts(till)[0] == before[0] + 1
    assert till.client.post("/v1/suggestions", body)["replayed"] is True
    status, _, refused = post(till, "/v1/suggestions", encode({**body, "outcome": "later"}))
    assert (status, refused["error"]) == (409, "already_recorded")
    assert counts(till)[0] == before[0] + 1
    # Answered: the next suggestion moves up, and the store's list drops it.
    shown = till.client.get(f"/v1/members/{CARD}")["suggestions"]
    assert [s["id"] for s in shown] == ["sg-2", "sg-3"]
    listed = till.client.get("/v1/suggestions")
    assert listed["store"] == "S001"
    assert [line["id"] for line in listed["suggestions"]] == ["sg-2", "sg-3"]
    assert {line["name"] for line in listed["suggestions"]} == {"Ann"}
    assert not any("phone" in key for line in listed["suggestions"] for key in line)


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"outcome": "maybe"}, 400, "invalid_outcome"),
        ({"outcome": ""}, 400, "invalid_outcome"),
        ({"suggestion": "sg 1"}, 400, "invalid_suggestion"),
        ({"suggestion": "sg-9"}, 409, "unknown_suggestion"),
        ({"member": "9900568732746027"}, 409, "unknown_suggestion"),
        ({"member": "not a card"}, 400, "invalid_card"),
        ({"member": " "}, 400, "invalid_member"),
        ({"staff": "c 17"}, 400, "invalid_staff"),
        ({"reason": "birthday"}, 400, "invalid_body"),
    ],
)
def test_bad_answers_are_refused_with_a_stable_code_and_nothing_written(
    till: SimulatedTill, member: str, changes: dict[str, Any], status: int, code: str
) -> None:
    before = counts(till)
    body = {"member": CARD, "suggestion": "sg-1", "outcome": "later", **changes}
    answered, _, refused = post(till, "/v1/suggestions", encode(body))
    assert (answered, refused["error"]) == (status, code), refused
    assert counts(till) == before


def test_the_store_list_refuses_a_bad_store(till: SimulatedTill) -> None:
    with pytest.raises(AgentError) as refused:
        till.client.get("/v1/suggestions?store=S%201")
    assert (refused.value.http_status, refused.value.code) == (400, "invalid_store")
    assert till.client.get("/v1/suggestions?store=S002")["suggestions"] == []
