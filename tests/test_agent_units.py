"""Pure parts of the daemon: sd_notify over a real datagram socket, staff PINs, the
event hub's bounded queues."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import staff
from agent.errors import InvalidInput, Refused
from agent.events import QUEUE_LIMIT, EventHub
from agent.ledger import Ledger
from agent.notify import Notifier
from agent.rules import default_rules_text, load_rules_text


def test_notify_sends_datagrams_to_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_s == 4.0
        assert notifier.ready("up")
        assert server.recv(100) == b"READY=1\nSTATUS=up"
        assert notifier.watchdog()
        assert server.recv(100) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert server.recv(100).startswith(b"STOPPING=1")


def test_notify_abstract_namespace_and_absence() -> None:
    name = f"tillpoints-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready("up")
        assert server.recv(100).startswith(b"READY=1")
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready("up") and quiet.watchdog_s is None
    other_pid = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_s is None


def test_staff_pins_roles_and_lockout(ledger: Ledger) -> None:
    with ledger.store.transaction() as conn:
        staff.add_staff(conn, "sup1", "supervisor", "2468")
        staff.add_staff(conn, "c1", "cashier", "1357")
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    assert staff.authorise(ledger.store, "sup1", "2468", "supervisor", clock) == "sup1"
    assert staff.authorise(ledger.store, "c1", "1357", "cashier", clock) == "c1"
    with pytest.raises(Refused) as caught:
        staff.authorise(ledger.store, "c1", "1357", "supervisor", clock)
    assert caught.value.code == "supervisor_required"
    with pytest.raises(Refused) as caught:
        staff.authorise(ledger.store, "sup1", None, "supervisor", clock)
    assert caught.value.code == "supervisor_required"
    for _ in range(staff.MAX_FAILURES):
        with pytest.raises(Refused) as caught:
            staff.authorise(ledger.store, "sup1", "0000", "supervisor", clock)
        assert caught.value.code == "bad_pin"
    with pytest.raises(staff.PinLocked):
        staff.authorise(ledger.store, "sup1", "2468", "supervisor", clock)
    now[0] += staff.LOCK_S + 1
    assert staff.authorise(ledger.store, "sup1", "2468", "supervisor", clock) == "sup1"
    listed = staff.list_staff(ledger.store)
    assert [item["staff_id"] for item in listed] == ["c1", "sup1"]
    # The PIN is stored only as a salted scrypt hash: it is in no column, and no text
    # column holds its digits. A salt or hash is random hex, which contains "2468"
    # by chance about once in 600 runs: those must be exactly hex digests instead.
    rows = ledger.store.conn.execute("SELECT * FROM staff").fetchall()
    for value in (str(value) for row in rows for value in row):
        assert value != "2468"
        if re.fullmatch(r"[0-9a-f]{32,}", value) is None:
            assert "2468" not in value


@pytest.mark.parametrize(
    ("staff_id", "role", "pin", "code"),
    [
        ("", "cashier", "1234", "invalid_staff"),
        ("a", "boss", "1234", "invalid_role"),
        ("a", "cashier", "12", "invalid_pin"),
        ("a", "cashier", "12ab", "invalid_pin"),
    ],
)
def test_bad_staff_records_are_refused(
    ledger: Ledger, staff_id: str, role: str, pin: str, code: str
) -> None:
    with pytest.raises(InvalidInput) as caught, ledger.store.transaction() as conn:
        staff.add_staff(conn, staff_id, role, pin)
    assert caught.value.code == code


def test_a_slow_subscriber_is_cut_off_not_buffered() -> None:
    async def scenario() -> list[bytes]:
        hub = EventHub()
        stream = hub.stream({"hello": True})
        first = await anext(stream)
        for number in range(QUEUE_LIMIT + 10):
            hub.publish("scan", {"n": number})
        assert hub.subscribers == 0
        return [first, *[chunk async for chunk in stream]]

    chunks = asyncio.run(scenario())
    assert chunks[0].startswith(b"event: hello") and len(chunks) == 1


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(min_value=-(10**9), max_value=10**9),
    category=st.sampled_from(["fresh", "tobacco", "drinks", "total"]),
    tier=st.integers(min_value=0, max_value=2),
    day=st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2031, 12, 31)),
    birthday=st.booleans(),
    half_up=st.booleans(),
)
def test_line_points_are_the_exact_fraction_rounded(
    amount: int, category: str, tier: int, day: dt.date, birthday: bool, half_up: bool
) -> None:
    # The slow, obvious reference: every multiplier as a Fraction, then rounding.
    rules = load_rules_text(
        default_rules_text().replace('rounding = "floor"', 'rounding = "half_up"')
        if half_up
        else default_rules_text()
    )
    level = rules.tiers[tier]
    multiplier = rules.category_multipliers.get(category, Fraction(1)) * level.multiplier
    for promotion in rules.promotions:
        if promotion.applies(day):
            multiplier *= promotion.multiplier
    if birthday:
        multiplier *= rules.birthday_multiplier
    exact = Fraction(amount, rules.earn_unit) * rules.earn_points_per_unit * multiplier
    expected = int(exact + Fraction(1, 2)) if half_up else int(exact)
    assert rules.line_points(category, amount, level, day, birthday) == expected
    assert rules.line_points(category, amount, level, day, birthday) == expected  # cached
