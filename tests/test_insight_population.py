"""The history a seed draws is pinned: ``Chain`` may be made cheaper, never
different (issue 18). The digests were taken from the code before its speed-ups
(c22b9ee); a change to them is a change to every ``hq simulate --seed N``."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace

import pytest

from sync.hq.insight.population import Chain

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _digest(seed: int, stores: int, members: int, days: int, first: int) -> tuple[str, int]:
    """A digest of the members and of the first ``first`` events, and how many events."""
    chain = Chain(seed, stores, members, days, START)
    digest = hashlib.sha256()
    for member in chain.members:
        # The weights as the tuple they were drawn into (a member holds a C array now).
        digest.update(repr(replace(member, missions=tuple(member.missions))).encode())
    count = 0
    for event in chain.events():
        if count == first:
            break
        fields = (event.when.isoformat(), event.kind, event.member.index, event.store)
        rest = (event.till, event.receipt, event.lines, event.redeem_wish)
        digest.update(repr((*fields, *rest)).encode())
        count += 1
    return digest.hexdigest(), count


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            (7, 10, 2000, 365, 20_000),
            ("f467e7163cccee3fae4866889735f8a2a439782a2686be764de25ff1b89f426f", 20_000),
        ),
        (
            (1, 3, 300, 90, 10**9),  # the whole period
            ("71651b1fc60a08be42cb45c89b16539492ed87a5a24da786583be0c7f054d874", 1_818),
        ),
    ],
)
def test_a_seed_draws_the_history_it_always_drew(
    args: tuple[int, int, int, int, int], expected: tuple[str, int]
) -> None:
    assert _digest(*args) == expected
