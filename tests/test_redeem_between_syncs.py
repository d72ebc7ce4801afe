"""Points spent twice at two tills that both synced minutes ago (issue #12).

Every till redeems against the balance HQ last confirmed; what another till did
since is unknown to it, however recent its sync. So between two syncs a till lets
a member spend at most ``redeem.offline_cap`` of the confirmed balance, plus what
the member earned at this till since (points no other till can know of). The
window reopens when HQ has counted this till's redemptions.

A real HQ server on loopback (SQLite and PostgreSQL), real tills in tmp_path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import Refused
from agent.fields import Line
from agent.ledger import Ledger
from agent.results import Redeemed
from agent.till_view import redeemable, till_view
from sync.hq.db import HQStore
from sync.hq.stores import open_store
from tests.sync_helpers import (
    HQServer,
    cli,
    make_till,
    register_till,
    running_hq,
    utc_now,
)

CAP = 2000  # the shipped rules' redeem.offline_cap


@pytest.fixture
def chain(tmp_path: Path, db_url: str) -> Iterator[tuple[HQServer, HQStore]]:
    store = open_store(db_url)
    with running_hq(db_url, tmp_path / "hq.log") as server:
        yield server, store
    store.close()


def _synced_member(tmp_path: Path, chain: tuple[HQServer, HQStore]) -> tuple[Path, Path, str]:
    """Two stores' tills that both synced just now, and the card of a member who
    holds 5,100 points at HQ (earned at the first)."""
    server, hq = chain
    one, two = make_till(tmp_path, "one", "S001"), make_till(tmp_path, "two", "S002")
    for state in (one, two):
        register_till(server, hq, state)
    ledger = Ledger(one)
    member = ledger.enrol(name="Ann", phone="0612345678").member_id
    ledger.earn(member, "BIG", lines=(_line(5000_00),))
    card = ledger.member_card(member)
    ledger.close()
    for state in (one, two, one):
        code, answer = cli(state, "sync")
        assert code == 0, answer
    return one, two, card


def _line(amount: int) -> Line:
    return Line("goods", 1, amount)


def _balance(state: Path, card: str) -> dict[str, int]:
    ledger = Ledger(state)
    try:
        figures = ledger.balance(card)
        return {"balance": figures.balance, "available": figures.available}
    finally:
        ledger.close()


def _redeem(state: Path, card: str, receipt: str, points: int) -> Redeemed:
    ledger = Ledger(state)
    try:
        return ledger.redeem(card, receipt, points)
    finally:
        ledger.close()


def _refused(state: Path, card: str, receipt: str, points: int) -> Refused:
    with pytest.raises(Refused) as caught:
        _redeem(state, card, receipt, points)
    return caught.value


def test_two_freshly_synced_tills_cannot_each_spend_the_whole_balance(
    tmp_path: Path, chain: tuple[HQServer, HQStore]
) -> None:
    one, two, card = _synced_member(tmp_path, chain)
    confirmed = _balance(two, card)["balance"]
    assert confirmed > 2 * CAP
    for state in (one, two):
        assert _balance(state, card) == {"balance": confirmed, "available": CAP}
        # The attack: the whole balance at each till, minutes after both synced.
        refusal = _refused(state, card, f"ALL-{state.name}", confirmed)
        assert refusal.code == "offline_cap"
        assert str(CAP) in refusal.message and "between two syncs" in refusal.message
        assert _redeem(state, card, f"CAP-{state.name}", CAP).points == CAP
        # The window is spent: not one more redemption at this till before a sync.
        assert _refused(state, card, f"MORE-{state.name}", 100).code == "offline_cap"
    for state in (one, two):
        assert cli(state, "sync")[0] == 0
    code, answer = cli(None, "hq", "balance", "--db", chain[0].db_url, "--member", card)
    assert code == 0
    # Both tills spent: at most one cap each, and the account is still positive.
    assert answer["balance"] == confirmed - 2 * CAP >= 0


def test_the_window_reopens_once_hq_has_counted_the_redemption(
    tmp_path: Path, chain: tuple[HQServer, HQStore]
) -> None:
    one, _two, card = _synced_member(tmp_path, chain)
    confirmed = _balance(one, card)["balance"]
    _redeem(one, card, "FIRST", CAP)
    assert _balance(one, card) == {"balance": confirmed - CAP, "available": 0}
    assert cli(one, "sync")[0] == 0
    assert _balance(one, card) == {"balance": confirmed - CAP, "available": CAP}
    assert _redeem(one, card, "SECOND", CAP).balance == confirmed - 2 * CAP


def test_points_earned_here_since_the_sync_add_to_the_window(
    tmp_path: Path, chain: tuple[HQServer, HQStore]
) -> None:
    _one, two, card = _synced_member(tmp_path, chain)
    confirmed = _balance(two, card)["balance"]
    ledger = Ledger(two)
    earned = ledger.earn(card, "HERE", lines=(_line(700_00),)).points
    ledger.close()
    assert earned > 0
    assert _balance(two, card) == {"balance": confirmed + earned, "available": CAP + earned}
    _redeem(two, card, "SPEND", CAP + earned)
    assert _refused(two, card, "MORE", 100).code == "offline_cap"
    # A refund of the redemption gives its points back, and the window with them.
    ledger = Ledger(two)
    ledger.refund("SPEND")
    ledger.close()
    assert _balance(two, card)["available"] == CAP + earned


def test_a_balance_under_the_cap_is_spendable_whole(
    tmp_path: Path, chain: tuple[HQServer, HQStore]
) -> None:
    one, two, card = _synced_member(tmp_path, chain)
    confirmed = _balance(one, card)["balance"]
    _redeem(one, card, "A", CAP)
    _redeem(two, card, "B", CAP)
    for state in (one, two):
        assert cli(state, "sync")[0] == 0
    assert cli(one, "sync")[0] == 0  # the first till learns of the second's redemption
    rest = confirmed - 2 * CAP
    assert 0 < rest < CAP
    assert _balance(one, card) == {"balance": rest, "available": rest}
    assert _redeem(one, card, "REST", rest).balance == 0


def test_redeemable_bounds_the_till_view_at_any_sync_age(
    tmp_path: Path, chain: tuple[HQServer, HQStore]
) -> None:
    _one, two, card = _synced_member(tmp_path, chain)
    ledger = Ledger(two)
    conn, device = ledger.store.conn, ledger.device_id
    view = till_view(conn, "C" + card, device)
    for hours in (0, 47, 100):
        now = utc_now() + dt.timedelta(hours=hours)
        got = redeemable(conn, "C" + card, device, offline_cap=CAP, offline_after_hours=48, now=now)
        assert got == CAP < view
    ledger.close()
