"""What a write keeps between writes (``agent.ledger_cache``, issue 18) against
reading it fresh every time.

Two copies of one till take the same earns at the same moments while HQ's tables
and the restored-till mark change between them: written by another connection, by
another process, and by the ledger's own connection outside its write path. One
ledger keeps what its writes read (the agent's), the other reads everything from
the file at every write (a cache that never holds). Each change must show in the
very next earn of both, and their answers, journals and tables must be equal."""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import LedgerError
from agent.ledger import DB_FILE, Ledger
from agent.ledger_cache import KEPT, StateCache
from agent.store import RESTORED_KEY
from tests.conftest import Clock
from tests.test_earn_fast import _dump


class _NeverKept(StateCache):
    """Every read goes to the file: the ledger as it was before the cache."""

    def begin(self, conn: sqlite3.Connection) -> None:
        self.clear()


def _other_connection(state: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(state / DB_FILE, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def _other_process(state: Path, sql: str, *args: object) -> None:
    code = (
        "import sqlite3, sys, json\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute(sys.argv[2], json.loads(sys.argv[3]))\n"
        "conn.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(state / DB_FILE), sql, json.dumps(list(args))],
        check=True,
    )


def _own_connection(ledger: Ledger, sql: str, *args: object) -> None:
    """A write on the ledger's own connection, not through its write path (as
    ``sync`` run in the same process writes)."""
    with ledger.store.transaction() as conn:
        conn.execute(sql, args)


def _day(ledger: Ledger, state: Path, clock: Clock, cards: list[str]) -> list[Any]:
    answers: list[Any] = []
    member = [ledger.resolve(card).member_id for card in cards]

    def attempt(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            answers.append(call(*args, **kwargs))
        except LedgerError as refusal:
            answers.append((refusal.code, refusal.message))

    def earn(n: int, receipt: str, amount: int = 250_000) -> None:
        attempt(ledger.earn, cards[n], receipt, amount=amount)
        clock.advance(minutes=3)

    earn(0, "A1")
    earn(1, "A2")
    earn(2, "A3")
    # HQ blocks card 1 (a download by another connection): the next earn refuses it.
    _other_connection(state, "INSERT INTO hq_cards VALUES (?, ?, 'blocked')", cards[1], member[1])
    earn(1, "B1")
    # Unblocked by a write on the ledger's own connection outside its write path.
    _own_connection(ledger, "UPDATE hq_cards SET state = 'active' WHERE card = ?", cards[1])
    earn(1, "B2")
    # Never synced: what may be redeemed is capped; a download (another process)
    # lifts the cap for the next earn.
    earn(0, "C1")
    _other_process(
        state,
        "INSERT INTO sync_state VALUES ('last_download', ?)",
        clock.now.isoformat(timespec="seconds"),
    )
    earn(0, "C2")
    # HQ confirms a balance for member 2: the next earn's balance is HQ's view.
    _other_connection(
        state,
        "INSERT INTO hq_balances VALUES (?, 777777, ?, 0)",
        member[2],
        clock.now.isoformat(timespec="seconds"),
    )
    earn(2, "D1")
    # Stale again: many hours without HQ, the cap is back.
    clock.advance(hours=100)
    earn(0, "E1")
    # `sync` (another process) finds the till restored: every write is refused.
    _other_process(state, "INSERT INTO sync_state VALUES (?, 'HQ holds 9 entries')", RESTORED_KEY)
    earn(0, "F1")
    attempt(ledger.redeem, cards[1], "F2", 100)
    return answers


def test_kept_reads_see_every_change_made_elsewhere(tmp_path: Path, clock: Clock) -> None:
    first = Ledger.init(tmp_path / "kept", "S001", "T01", clock=clock)
    cards = [first.enrol(name=f"Member {n}", phone=f"555000{n:04d}").card for n in range(3)]
    first.close()
    shutil.copytree(tmp_path / "kept", tmp_path / "fresh")
    start = clock.now

    kept = Ledger(tmp_path / "kept", clock=clock)
    kept.start_checkpointer()  # as the agent runs it: its checkpoints change nothing
    kept_answers = _day(kept, tmp_path / "kept", clock, cards)

    clock.now = start
    fresh = Ledger(tmp_path / "fresh", clock=clock)
    object.__setattr__(fresh.context, "cache", _NeverKept())
    fresh_answers = _day(fresh, tmp_path / "fresh", clock, cards)
    try:
        assert kept_answers == fresh_answers
        codes = [answer[0] for answer in kept_answers if isinstance(answer, tuple)]
        assert codes == ["card_blocked", "till_restored_from_backup", "till_restored_from_backup"]
        by_receipt = {
            answer.receipt: answer for answer in kept_answers if not isinstance(answer, tuple)
        }
        assert by_receipt["C1"].redeemable < by_receipt["C2"].redeemable  # cap lifted
        assert by_receipt["E1"].redeemable < by_receipt["C2"].redeemable  # cap back
        assert by_receipt["D1"].balance > 777777 > by_receipt["A3"].balance  # HQ's view
        assert _dump(kept) == _dump(fresh)
    finally:
        kept.close()
        fresh.close()


def test_the_head_is_read_again_after_another_writer_appends(tmp_path: Path, clock: Clock) -> None:
    """A second ledger on the same file (the CLI while the agent runs) appends an
    entry: the first ledger's next write follows it, not the head it kept."""
    agent = Ledger.init(tmp_path / "state", "S001", "T01", clock=clock)
    card = agent.enrol(name="Member", phone="5550001111").card
    agent.earn(card, "R1", amount=1000)
    cli = Ledger(tmp_path / "state", clock=clock)
    try:
        cli.earn(card, "R2", amount=1000)
        agent.earn(card, "R3", amount=1000)
        cli.earn(card, "R4", amount=1000)
        agent.earn(card, "R5", amount=1000)
        entries = list(agent.entries())
        assert [entry.seq for entry in entries] == list(range(1, len(entries) + 1))
        assert all(entry.prev == before.hash for before, entry in itertools.pairwise(entries))
        assert [entry.body.get("receipt") for entry in entries[-5:]] == [
            "R1",
            "R2",
            "R3",
            "R4",
            "R5",
        ]
    finally:
        cli.close()
        agent.close()


def test_what_is_kept_for_cards_and_accounts_is_bounded() -> None:
    """A till offline for weeks serves many members between two changes: the cards'
    and accounts' answers start afresh at ``KEPT``, and stay right."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE hq_cards (card TEXT, state TEXT)")
    conn.execute("INSERT INTO hq_cards VALUES ('blocked-card', 'blocked')")
    cache = StateCache()
    cache.begin(conn)
    for number in range(3 * KEPT):
        assert not cache.blocked_by_hq(conn, f"card-{number}")
        assert len(cache._blocked) <= KEPT
    assert cache.blocked_by_hq(conn, "blocked-card")
    assert cache.blocked_by_hq(conn, "blocked-card")
    cache.end()
