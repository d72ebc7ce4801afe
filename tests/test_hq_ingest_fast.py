"""HQ's ingest fast paths against the slow ones they stand in for: an earn's row
made inline (``sync.hq.ingest.earn_row``) against ``entry_row`` with
``facts_of_body``; plausibility passing over an earn within bounds without
``_reason`` (``sync.hq.plausible.findings``) against ``_reason`` on every row."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chain import Entry, canonical, typed_digest
from agent.entries import Earn
from sync.hq import plausible
from sync.hq.extract import facts_of_body
from sync.hq.ingest import earn_row, entry_row
from tests.test_entries import _instances


@settings(max_examples=200, deadline=None)
@given(_instances(Earn), st.none() | st.text(max_size=4))
def test_an_earns_row_is_entry_rows(earn: Earn, staff: str | None) -> None:
    body = json.loads(canonical(earn.to_body()))
    entry = Entry("d", 3, "2026-01-01T00:00:00.000+00:00", "earn", staff, body, "0" * 64, "h", "s")
    _, text, typed = typed_digest(entry)
    assert type(typed) is Earn
    assert earn_row(entry, text, typed) == entry_row(entry, text, facts_of_body(entry, typed))


_INT = st.integers(-(2**40), 2**40)
_KINDS = st.sampled_from(["earn", "adjust", "redeem", "refund", "enrol", "bonus"])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(_KINDS, _INT, _INT, _INT, st.integers(0, 5), st.none() | st.integers(-1, 1)),
        max_size=8,
    ),
    st.integers(1, 10**6),
    st.integers(1, 10**6),
    st.fractions(min_value=Fraction(1, 1000), max_value=1000),
)
def test_findings_are_reasons_of_every_row(
    cases: list[tuple[str, int, int, int, int, int | None]],
    adjust: int,
    entry: int,
    rate: Fraction,
) -> None:
    """Any kind, any numbers, and earns at their bound (``near``: one under, at,
    one over)."""
    bounds = plausible.Limits(adjust_points=adjust, entry_points=entry, earn_per_unit=rate)
    rows: list[tuple[Any, ...]] = []
    for seq, (kind, delta, expired, amount, count, near) in enumerate(cases, start=1):
        if near is not None:
            allowed = amount * rate.numerator // (rate.denominator * 100) + max(1, count)
            delta = allowed + near
        rows.append(("d", seq, "ts", kind, None, "{}", "p", "h", "s", "a", delta, expired, amount))
    counts = [case[4] for case in cases]
    expected = [
        plausible.Finding(row[1], row[3], row[10] - row[11], reason)
        for row, count in zip(rows, counts, strict=True)
        if (reason := plausible._reason(row[3], row[10], row[11], row[12], count, bounds))
        is not None
    ]
    assert list(plausible.findings(rows, counts, bounds)) == expected
