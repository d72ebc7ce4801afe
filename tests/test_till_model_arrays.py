"""The simulated till's accounts in 4-byte arrays (issue 18's RSS) against the
8-byte ones they were: the same rows whatever numbers arrive, a number too large
for 4 bytes widening the array instead of failing."""

from __future__ import annotations

import datetime as dt
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.entries import Lot
from sync.hq.insight.till_model import Account

# Around the edges of a C int, as well as the numbers a simulation writes.
numbers = st.one_of(
    st.integers(0, 10_000),
    st.integers(2**31 - 3, 2**31 + 3),
    st.integers(-(2**31) - 3, -(2**31) + 3),
    st.integers(-(2**63), 2**63 - 1),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["lot", "sale"]), numbers, numbers, st.integers(0, 400)),
        max_size=12,
    )
)
def test_the_narrow_arrays_hold_what_wide_ones_would(
    steps: list[tuple[str, int, int, int]],
) -> None:
    account = Account()
    wide_rows, wide_sales = array("q"), array("q")
    start = dt.date(2025, 1, 1)
    for op, first, second, days_on in steps:
        day = start + dt.timedelta(days=days_on)
        if op == "lot":
            points = abs(second) % 2**62 + 1
            lot = Lot(spendable_on=day.isoformat(), expires_on=(day.replace(year=2027)).isoformat())
            account.add_lot(first, points, lot)
            wide_rows.extend((first, points, day.toordinal(), day.replace(year=2027).toordinal()))
        else:
            account.add_sale(day.isoformat(), second)
            wide_sales.extend((day.toordinal(), second, 0))
    assert account.rows.tolist() == wide_rows.tolist()
    assert account.sales.tolist() == wide_sales.tolist()
    fits = all(-(2**31) <= n < 2**31 for n in wide_rows.tolist() + wide_sales.tolist())
    assert (account.rows.typecode, account.sales.typecode) != ("q", "q") or not fits


def _code(rows: array[int]) -> str:
    return rows.typecode


def test_a_number_past_four_bytes_widens_the_array() -> None:
    account = Account()
    lot = Lot(spendable_on="2025-01-01", expires_on="2027-01-01")
    account.add_lot(7, 100, lot)
    assert _code(account.rows) == "i"
    account.add_lot(2**40, 2**33, lot)
    assert _code(account.rows) == "q"
    assert account.rows.tolist()[4:6] == [2**40, 2**33]
    assert account.balance("2025-06-01") == 100 + 2**33
    account.add_sale("2025-01-02", 2**35)
    assert _code(account.sales) == "q"
    assert account.spend_since("2025-01-01") == 2**35
