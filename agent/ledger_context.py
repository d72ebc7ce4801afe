"""What the parts of the ledger share: the till's state as ``Ledger`` opened it.

``agent.ledger.Ledger`` is composed of collaborators, not mixins: ``LedgerReads``
(whose points, where a member stands), ``LedgerNumbers`` (member ids, e-card
numbers), ``LedgerOffers`` and ``LedgerRefunds`` (two operations with their own
rules). Each takes this one context, and the writers take the ledger's one write
path (``Record``) as a callable, so no part imports ``agent.ledger`` and none can
reach another's state except through the context.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from agent.config import Config
from agent.entries import Body, Kind, Lot
from agent.ledger_cache import StateCache
from agent.projection import Effects
from agent.results import Answer
from agent.rules import Rules
from agent.store import Store
from agent.till_secrets import TillSecrets

Clock = Callable[[], dt.datetime]
# What an operation hands the write path (see ``agent.ledger.Ledger._record``): how
# to decide the entry's typed body under the write lock (or find the answer a replay
# gives back), and how to build its answer (``agent.results``) from that body once
# the effects are known. ``None``: an entry nobody waits an answer for (the genesis).
B = TypeVar("B", bound=Body)
R = TypeVar("R", bound=Answer | None)
Decide = Callable[[sqlite3.Connection], B | R]
Finish = Callable[[sqlite3.Connection, int, Effects, B], R]


class Record(Protocol):
    """The ledger's one write path, as its collaborators hold it."""

    def __call__(
        self, kind: Kind, staff: str | None, decide: Decide[B, R], finish: Finish[B, R]
    ) -> R: ...


def local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


@dataclass(frozen=True)
class LedgerContext:
    """The till's state every part of the ledger reads; fixed once the ledger is open."""

    state_dir: Path
    store: Store
    config: Config
    secrets: TillSecrets
    rules: Rules
    device_id: str
    clock: Clock
    # What writes read that only other writers change (agent.ledger_cache).
    cache: StateCache

    def today(self) -> dt.date:
        return self.clock().date()

    def lot_dates(self, day: dt.date, locked: bool = True) -> Lot:
        """When points credited on ``day`` may be spent and when they run out: a lot
        from a sale waits out the lock window (against buy-redeem-return abuse)."""
        spendable = self.rules.spendable_on(day) if locked else day
        return Lot(
            spendable_on=spendable.isoformat(), expires_on=self.rules.expires_on(day).isoformat()
        )
