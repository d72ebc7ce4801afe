"""The simulated till's fast paths against the slow ones they stand for (issue 18):
the receipt fingerprints spliced as text against ``canonical`` JSON."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.hq.insight.till_model import earn_fingerprint, fingerprint, redeem_fingerprint

numbers = st.one_of(st.integers(), st.booleans())  # a bool is no int to ``canonical``


@settings(max_examples=400, deadline=None)
@given(
    account=st.text(),
    lines=st.lists(st.tuples(st.text(), numbers, numbers), max_size=5).map(tuple),
)
def test_an_earns_fingerprint_is_the_canonical_ones(
    account: str, lines: tuple[tuple[str, int, int], ...]
) -> None:
    content = [{"category": c, "qty": q, "amount": a} for c, q, a in lines]
    assert earn_fingerprint(account, lines) == fingerprint(account, content)


@settings(max_examples=200, deadline=None)
@given(account=st.text(), points=numbers, amount=numbers)
def test_a_redemptions_fingerprint_is_the_canonical_ones(
    account: str, points: int, amount: int
) -> None:
    expected = fingerprint(account, {"points": points, "amount": amount})
    assert redeem_fingerprint(account, points, amount) == expected
