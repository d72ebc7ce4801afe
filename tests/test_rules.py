"""``Rules.tier_for`` walks the tiers by threshold, highest first (issue 18): the
tier the obvious ``max`` over the tiers reached picks, ties included."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rules import Tier, default_rules_text, load_rules_text

RULES = load_rules_text(default_rules_text())


@settings(max_examples=300, deadline=None)
@given(
    thresholds=st.lists(st.sampled_from([0, 500, 10_000, 10_000, 250_000]), min_size=0, max_size=5),
    spend=st.integers(-(10**6), 10**6),
)
def test_tier_for_is_the_first_of_the_highest_thresholds_reached(
    thresholds: list[int], spend: int
) -> None:
    tiers = tuple(
        Tier(f"t{n}", threshold, Fraction(n + 1)) for n, threshold in enumerate([0, *thresholds])
    )
    rules = dataclasses.replace(RULES, tiers=tiers)
    reached = [tier for tier in tiers if max(0, spend) >= tier.min_spend]
    assert rules.tier_for(spend) is max(reached, key=lambda tier: tier.min_spend)
