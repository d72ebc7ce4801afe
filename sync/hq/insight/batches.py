"""Following HQ's stored batches: what the insight tables have not read yet.

Batches are numbered in commit order (sync/hq/ingest.py), so a cursor of the last
batch read is enough to read every new entry exactly once. A page of batches is read
per transaction with the cursor row locked, so two HQ workers refreshing at the same
moment take turns instead of reading the same entries twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sync.hq.db import HQStore, Tx

PAGE = 500  # batches per transaction

# (device, seq, ts, kind, body, home store of the device)
EntryRow = tuple[Any, ...]


def device_ranges(tx: Tx, span: tuple[int, int]) -> list[tuple[Any, ...]]:
    """The entries of the batches numbered after ``span[0]`` up to ``span[1]``, as
    (device, first seq, last seq): each device's seqs from its first batch in the
    span to its last, one range a device (a device's batches take its seqs in the
    order they are numbered, so the range holds no other batch of it)."""
    return tx.all(
        "SELECT device, MIN(first_seq), MAX(last_seq) FROM batches "
        "WHERE batch_no > ? AND batch_no <= ? GROUP BY device ORDER BY device",
        span,
    )


def in_ranges(alias: str, ranges: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """The condition that picks ``alias``'s rows in ``ranges`` (``device_ranges``),
    one index range each, and its parameters.

    Picked by a join with ``batches`` alone, PostgreSQL misjudged a night's page (180
    batches, 600,000 entries) as a few thousand rows and hashed the whole of the
    table for it: every entry or fact the chain ever stored, for each statement of
    each page (issue 18)."""
    if not ranges:
        return "1 = 0", []
    term = f"({alias}.device = ? AND {alias}.seq BETWEEN ? AND ?)"
    return f"({' OR '.join([term] * len(ranges))})", [value for row in ranges for value in row]


def follow_batches(
    store: HQStore,
    state_table: str,
    kinds: Sequence[str],
    apply: Callable[[Tx, list[EntryRow]], int],
    page: int = PAGE,
    then: Callable[[Tx, tuple[int, int]], None] | None = None,
    wait: bool = True,
) -> int:
    """Hand the entries of ``kinds`` in every batch stored since ``state_table``'s
    cursor to ``apply`` (inside the transaction that moves the cursor); returns the
    count ``apply`` reports. ``then`` is given the page's batch range after
    ``apply``, in the same transaction. ``wait=False``: stop, rather than wait, when
    another reader holds the cursor (``Tx.locked``'s ``skip``)."""
    marks = ", ".join("?" for _ in kinds)
    read = 0
    while True:
        with store.write() as tx:
            cursor_row = tx.locked(
                f"SELECT batch_no FROM {state_table} WHERE id = 1",  # noqa: S608
                skip=not wait,
            )
            if cursor_row is None and not wait:
                return read
            cursor = int(cursor_row[0]) if cursor_row else 0
            pages = tx.all(
                "SELECT batch_no FROM batches WHERE batch_no > ? ORDER BY batch_no LIMIT ?",
                (cursor, page),
            )
            if not pages:
                return read
            upto = int(pages[-1][0])
            # The join puts the entries in batch order; ``in_ranges`` finds them.
            picked, ranges = in_ranges("e", device_ranges(tx, (cursor, upto)))
            rows = tx.all(
                "SELECT e.device, e.seq, e.ts, e.kind, e.body, d.store FROM entries e "  # noqa: S608
                "JOIN batches b ON e.device = b.device AND e.seq BETWEEN b.first_seq "
                "AND b.last_seq JOIN devices d ON d.device = e.device "
                f"WHERE {picked} AND b.batch_no > ? AND b.batch_no <= ? "
                f"AND e.kind IN ({marks}) ORDER BY b.batch_no, e.seq",
                (*ranges, cursor, upto, *kinds),
            )
            read += apply(tx, [tuple(row) for row in rows])
            if then is not None:
                then(tx, (cursor, upto))
            tx.run(f"UPDATE {state_table} SET batch_no = ? WHERE id = 1", (upto,))  # noqa: S608
