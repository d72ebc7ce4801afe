"""Following HQ's stored batches: what the insight tables have not read yet.

Batches are numbered in commit order (sync/hq/ingest.py), so a cursor of the last
batch read is enough to read every new entry exactly once. A page of batches is read
per transaction with the cursor row locked, so two HQ workers refreshing at the same
moment take turns instead of reading the same entries twice.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

from sync.hq.db import HQStore, Tx

PAGE = 500  # batches per transaction
# Entries per transaction, at most (but at least one batch): a night's page of 200
# batches at a 1,000-till chain is 600,000 entries and over two minutes of refresh
# at a million members, past the HQ server's request timeout (120 s), so a page
# view's refresh would be stopped before it committed anything, every time; and
# each page's entries are held in memory together (issue 18).
PAGE_ENTRIES = 50_000
MAX_BATCH = 2**62  # past any batch number

# (device, seq, ts, kind, body, home store of the device)
EntryRow = tuple[Any, ...]
# A stored batch: (batch_no, device, first seq, last seq).
Batch = tuple[int, str, int, int]


def batches_in(tx: Tx, span: tuple[int, int], limit: int = MAX_BATCH) -> list[Batch]:
    """The batches numbered after ``span[0]`` up to ``span[1]``, the first ``limit``
    of them, in order."""
    rows = tx.all(
        "SELECT batch_no, device, first_seq, last_seq FROM batches "
        "WHERE batch_no > ? AND batch_no <= ? ORDER BY batch_no LIMIT ?",
        (*span, limit),
    )
    return [
        (int(number), str(device), int(first), int(last)) for number, device, first, last in rows
    ]


def device_ranges(batches: Sequence[Batch]) -> list[tuple[str, int, int]]:
    """The entries of ``batches`` as (device, first seq, last seq): each device's
    seqs from its first batch among them to its last, one range a device. Given a
    run of consecutive batch numbers, a range holds no other batch of its device: a
    device's batches take its seqs in the order they are numbered."""
    spans: dict[str, tuple[int, int]] = {}
    for _, device, first, last in batches:
        low, high = spans.get(device, (first, last))
        spans[device] = (min(low, first), max(high, last))
    return [(device, low, high) for device, (low, high) in sorted(spans.items())]


def _up_to(batches: list[Batch], entries: int) -> list[Batch]:
    """The first of ``batches`` that hold ``entries`` entries at most together (the
    first batch whatever it holds)."""
    held = 0
    for count, (_, _, first, last) in enumerate(batches):
        held += last - first + 1
        if held > entries and count:
            return batches[:count]
    return batches


def _batch_order(batches: Sequence[Batch]) -> Callable[[EntryRow], tuple[int, int]]:
    """The sort key that puts entry rows (device and seq first) in ``batches``'
    order, then seq order."""
    starts: dict[str, tuple[list[int], list[int]]] = {}
    for number, device, first, _ in batches:
        firsts, numbers = starts.setdefault(device, ([], []))
        firsts.append(first)
        numbers.append(number)

    def key(row: EntryRow) -> tuple[int, int]:
        firsts, numbers = starts[row[0]]
        return numbers[bisect.bisect_right(firsts, row[1]) - 1], row[1]

    return key


def in_ranges(alias: str, ranges: Sequence[tuple[str, int, int]]) -> tuple[str, list[Any]]:
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
    entries: int = PAGE_ENTRIES,
) -> int:
    """Hand the entries of ``kinds`` in every batch stored since ``state_table``'s
    cursor to ``apply`` (inside the transaction that moves the cursor); returns the
    count ``apply`` reports. ``then`` is given the page's batch range after
    ``apply``, in the same transaction. A page is ``page`` batches, fewer if they hold
    more than ``entries`` entries. ``wait=False``: stop, rather than wait, when
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
            batches = _up_to(batches_in(tx, (cursor, MAX_BATCH), page), entries)
            if not batches:
                return read
            upto = batches[-1][0]
            # Each device's range, then batch order here: joined to ``batches`` for its
            # order, PostgreSQL (no statistics yet for the night's seqs) expected one
            # row and compared each of a night's 600,000 with each of its 180 batches,
            # then sorted their bodies on disk: 37 s at a million members (issue 18).
            picked, ranges = in_ranges("e", device_ranges(batches))
            rows = tx.all(
                "SELECT e.device, e.seq, e.ts, e.kind, e.body, d.store FROM entries e "  # noqa: S608
                f"JOIN devices d ON d.device = e.device WHERE {picked} AND e.kind IN ({marks})",
                (*ranges, *kinds),
            )
            rows.sort(key=_batch_order(batches))
            read += apply(tx, [tuple(row) for row in rows])
            if then is not None:
                then(tx, (cursor, upto))
            tx.run(f"UPDATE {state_table} SET batch_no = ? WHERE id = 1", (upto,))  # noqa: S608
