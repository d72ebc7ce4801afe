"""E-card numbers stay unique across the chain: HQ assigns each till its own block
at registration, in order, on both backends; unregistered tills use the other half."""

from __future__ import annotations

from pathlib import Path

from agent.ledger import Ledger
from drivers.cards import luhn_ok
from sync.hq.db import HQStore
from tests.sync_helpers import HQServer, make_till, register_till, running_hq


def _ecard(state: Path, phone: str) -> str:
    ledger = Ledger(state)
    try:
        return str(ledger.enrol(name="E", phone=phone).card)
    finally:
        ledger.close()


def test_registered_tills_issue_ecards_from_distinct_blocks(
    tmp_path: Path, db_url: str, hq_store: HQStore
) -> None:
    server: HQServer
    with running_hq(db_url, tmp_path / "hq.log") as server:
        first, second = make_till(tmp_path, "a", till="T1"), make_till(tmp_path, "b", till="T2")
        unregistered = _ecard(first, "0611000001")
        register_till(server, hq_store, first)
        register_till(server, hq_store, second)
        cards = [_ecard(first, "0611000002"), _ecard(second, "0611000003")]
    assert int(unregistered[4:9]) >= 50_000  # the half HQ never assigns
    blocks = [card[4:9] for card in cards]
    assert blocks == ["00001", "00002"]
    assert all(card.startswith("9900") and luhn_ok(card) for card in cards)
