"""Numbering on this till: member ids and e-card numbers.

Each comes from a counter in the ``meta`` table, advanced inside the transaction of
the entry that uses it, so a number is never given twice.
"""

from __future__ import annotations

import sqlite3

from agent.errors import Refused
from agent.ledger_context import LedgerContext
from drivers.cards import luhn_digit


class LedgerNumbers:
    def __init__(self, context: LedgerContext) -> None:
        self.context = context

    def next_counter(self, conn: sqlite3.Connection, name: str) -> int:
        key = f"counter:{name}"
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        number = int(row[0]) + 1 if row else 1
        self.context.store.set_meta(conn, key, str(number))
        return number

    def next_ecard(self, conn: sqlite3.Connection) -> str:
        """An e-card number from this till's block: prefix, a 5-digit block, a counter
        and the Luhn digit. HQ assigns the block at registration (unique across the
        chain); before that the block is derived from the device id, in the upper half
        (50000-99999) that HQ never assigns."""
        policy = self.context.config.cards
        prefix = policy.prefixes[0]
        counter_digits = policy.length - len(prefix) - 1 - 5
        assigned = self.context.store.meta("ecard_block")
        number_of_block = (
            int(assigned) if assigned else 50_000 + int(self.context.device_id, 16) % 50_000
        )
        block = f"{number_of_block:05d}"
        while True:
            number = self.next_counter(conn, "ecards")
            if number >= 10**counter_digits:
                raise Refused("ecards_exhausted", "card: this till's e-card block is used up")
            body = f"{prefix}{block}{number:0{counter_digits}d}"
            card = body + luhn_digit(body)
            if not conn.execute("SELECT 1 FROM cards WHERE card = ?", (card,)).fetchone():
                return card
