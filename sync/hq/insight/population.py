"""A chain's stores, members and their shopping, drawn from one seeded generator.

Pure: no database, no clock, no key. ``Chain(seed, ...)`` draws the same stores
and members, and ``Chain.events()`` the same enrolments, visits and refunds in
the same order, for the same seed, so two runs of ``hq simulate --seed N`` make
the same history (only the tills' keys, hence device and member ids, differ:
a signing key is never derived from a seed).

The shape is what a grocery chain's programme looks like: members enrol at a
home store (a launch wave, then a trickle), visit at a personal rate modulated
by the weekday and the season (December peak, summer bump, January slump), at
hours that depend on their age, buy baskets built from shopping *missions*
(breakfast = bakery + dairy, party = snacks + drinks, ...) so that categories
have real affinities, sometimes shop at another store of their region, and
some lapse for good.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
from array import array
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

from drivers.cards import luhn_digit

REGIONS = ("north", "south", "east", "west", "central")
# A refunded sale comes back on one of the next REFUND_DAYS days (before closing).
REFUND_DAYS = 6
TILLS_PER_STORE = 2
# Typical shelf price of one unit, minor units.
PRICES = {
    "fresh": 350,
    "bakery": 220,
    "dairy": 180,
    "grocery": 300,
    "drinks": 250,
    "snacks": 190,
    "frozen": 420,
    "household": 560,
    "personal_care": 640,
    "baby": 890,
    "pet": 720,
    "tobacco": 950,
}
MISSIONS: tuple[tuple[str, ...], ...] = (
    ("bakery", "dairy"),
    ("fresh", "grocery"),
    ("snacks", "drinks"),
    ("baby", "personal_care"),
    ("household", "personal_care"),
    ("pet", "grocery"),
    ("drinks",),
    ("tobacco", "drinks"),
    ("frozen", "fresh"),
)
_BABY, _PET, _SMOKER = 3, 5, 7
WEEKDAY = (0.9, 1.05, 0.9, 1.0, 1.15, 1.35, 1.0)  # Monday .. Sunday
MONTH = (0.85, 0.9, 0.95, 1.0, 1.0, 1.05, 1.1, 1.1, 0.95, 1.0, 1.1, 1.45)
_CHRISTMAS = 1.3
_PEAK = max(WEEKDAY) * max(MONTH) * _CHRISTMAS
_CATEGORIES = tuple(PRICES)
_SPREAD = 1.6 - 0.7  # ``rng.uniform(0.7, 1.6)`` is ``0.7 + _SPREAD * rng.random()``
# Weights of the hours 8..21 by daily routine.
HOURS = {
    "morning": (6, 9, 9, 8, 6, 4, 4, 3, 3, 2, 2, 1, 1, 1),
    "worker": (1, 1, 1, 2, 6, 5, 2, 2, 3, 6, 9, 8, 4, 2),
    "family": (2, 3, 5, 6, 4, 3, 4, 5, 6, 7, 6, 4, 2, 1),
}
# ``rng.choices(range(14), HOURS[routine])[0]`` without summing the weights each
# time: the cumulative weights and their total, as ``random.choices`` makes them.
_HOUR_CUMULATIVE = {routine: list(accumulate(weights)) for routine, weights in HOURS.items()}
_TILLS = tuple(f"T{n:02d}" for n in range(1, TILLS_PER_STORE + 1))


def _hour(rng: random.Random, routine: str) -> int:
    """The hour (8..21) of a visit: ``8 + rng.choices(range(14), HOURS[routine])[0]``,
    drawing the very same number (tests/test_insight_population.py)."""
    cumulative = _HOUR_CUMULATIVE[routine]
    return 8 + bisect(cumulative, rng.random() * (cumulative[-1] + 0.0), 0, len(cumulative) - 1)


@dataclass(frozen=True)
class Store:
    store_id: str
    region: str
    weight: float

    @property
    def tills(self) -> tuple[str, ...]:
        return _TILLS


# A drawn chain's districts: each member names one of these texts, not a copy of its own.
_DISTRICTS = {(region, n): f"{region}-{n}" for region in REGIONS for n in range(1, 4)}


@dataclass(frozen=True, slots=True)
class Member:
    """A member as drawn. Slotted, the missions' weights a C array and the district
    a shared text: a chain of 100,000 members was 840 bytes each (issue 18's RSS)."""

    index: int
    home: str
    age: int
    birthday: dt.date
    gender: str
    household: int
    district: str
    consent: bool
    phone: str
    card: str
    rate: float  # visits a day before weekday and season
    routine: str
    missions: Sequence[float]  # a weight per ``MISSIONS``' mission
    enrol_at: float  # days since the start
    lapse_day: int | None


@dataclass(frozen=True)
class Event:
    """Something a member does at a till. ``kind``: enrol, visit, refund."""

    when: dt.datetime
    kind: str
    member: Member
    store: str
    till: str
    receipt: str
    lines: tuple[tuple[str, int, int], ...] = ()
    redeem_wish: float = 0.0  # share of the points a visit would like to spend (0: none)


def program_card(index: int) -> str:
    """A physical programme card: prefix 9900, the member's number, Luhn digit.
    (Cards, not till-numbered e-cards: two tills may share an e-card block.)"""
    body = f"9900{index:011d}"
    return body + luhn_digit(body)


class Chain:
    def __init__(self, seed: int, stores: int, members: int, days: int, start: dt.datetime) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (a reproducible simulation, no secret)
        self.days, self.start = days, start
        rng = self.rng
        self.stores = [
            Store(f"S{n:03d}", REGIONS[n % len(REGIONS)], math.exp(rng.gauss(0, 0.4)))
            for n in range(1, stores + 1)
        ]
        self._by_id = {store.store_id: store for store in self.stores}
        self.by_region: dict[str, list[Store]] = {}
        for store in self.stores:
            self.by_region.setdefault(store.region, []).append(store)
        weights = [store.weight for store in self.stores]
        homes = rng.choices(self.stores, weights, k=members)
        self.members = [self._member(index, homes[index]) for index in range(members)]
        self._receipts = 0
        self._factors = [self._factor(day) for day in range(days)]

    def _member(self, index: int, home: Store) -> Member:
        rng = self.rng
        age = int(rng.triangular(18, 88, 38))
        household = min(6, 1 + int(rng.expovariate(0.7)))
        missions = [rng.uniform(0.5, 2.0) for _ in MISSIONS]
        missions[_BABY] *= 4.0 if household >= 3 and 22 <= age <= 42 else 0.0
        missions[_PET] *= 1.5 if rng.random() < 0.3 else 0.1
        missions[_SMOKER] *= 1.0 if age >= 25 and rng.random() < 0.2 else 0.0
        routine = "morning" if age >= 65 else "family" if household >= 3 else "worker"
        born = dt.date(self.start.year - age, rng.randint(1, 12), rng.randint(1, 28))
        # A launch wave in the first fortnight, then a steady trickle.
        launch = rng.random() < 0.4
        enrol_at = rng.uniform(0, min(14, self.days)) if launch else rng.uniform(0, self.days)
        lapse = None
        if rng.random() < 0.3:
            lapse = int(enrol_at + rng.expovariate(1 / 120)) + 1
        return Member(
            index=index,
            home=home.store_id,
            age=age,
            birthday=born,
            gender=rng.choices("FMX", (48, 48, 4))[0],
            household=household,
            district=_DISTRICTS[home.region, rng.randint(1, 3)],
            consent=rng.random() < 0.7,
            phone=f"07{index:09d}",
            card=program_card(index),
            rate=min(0.6, max(0.005, math.exp(rng.gauss(math.log(0.06), 0.8)))),
            routine=routine,
            missions=array("d", missions),
            enrol_at=enrol_at,
            lapse_day=lapse,
        )

    # -- the event stream -----------------------------------------------------------

    def factor(self, day: int) -> float:
        return self._factors[day] if 0 <= day < self.days else self._factor(day)

    def _factor(self, day: int) -> float:
        date = (self.start + dt.timedelta(days=day)).date()
        christmas = _CHRISTMAS if date.month == 12 and 15 <= date.day <= 24 else 1.0
        return WEEKDAY[date.weekday()] * MONTH[date.month - 1] * christmas

    def _next_visit(self, member: Member, after_day: int) -> float | None:
        """Thinning (Lewis-Shedler): candidates at the peak rate, kept in proportion
        to the day's factor; at most one visit a day."""
        rng, t = self.rng, float(after_day + 1)
        rate, factors = member.rate * _PEAK, self._factors
        end = self.days if member.lapse_day is None else min(self.days, member.lapse_day)
        while True:
            t += rng.expovariate(rate)
            day = int(t)
            if day >= end:
                return None
            if rng.random() * _PEAK < factors[day]:
                hour = _hour(rng, member.routine)
                return day + (hour * 60 + rng.randrange(60)) / 1440

    def events(self) -> Iterator[Event]:
        """Every event of the simulated period, in time order."""
        queue: list[tuple[float, int, str, int, str]] = []
        order = 0
        for member in self.members:
            day = int(member.enrol_at)
            hour = _hour(self.rng, member.routine)
            at = day + (hour * 60 + self.rng.randrange(55)) / 1440
            queue.append((at, order, "enrol", member.index, ""))
            order += 1
        heapq.heapify(queue)
        while queue:
            at, _, kind, index, receipt = heapq.heappop(queue)
            member = self.members[index]
            if kind == "refund":
                store, till = receipt.split("/")[1:3]
                yield Event(
                    self.start + dt.timedelta(days=at), "refund", member, store, till, receipt
                )
                continue
            if kind == "enrol":
                till = self.rng.choice(self._store(member.home).tills)
                when = self.start + dt.timedelta(days=at)
                yield Event(when, "enrol", member, member.home, till, "")
                visit = self._visit(member, at + 2 / 1440, home_till=till)
            else:
                visit = self._visit(member, at)
            yield visit
            order += 1
            if self.rng.random() < 0.015:
                # Brought back on one of the next six days, while the store is open.
                later = int(at) + self.rng.randint(1, REFUND_DAYS) + self.rng.uniform(9, 20) / 24
                if later < self.days:
                    heapq.heappush(queue, (later, order, "refund", index, visit.receipt))
                    order += 1
            upcoming = self._next_visit(member, int(at))
            if upcoming is not None:
                heapq.heappush(queue, (upcoming, order, "visit", index, ""))

    def _store(self, store_id: str) -> Store:
        return self._by_id[store_id]

    def _visit(self, member: Member, at: float, home_till: str | None = None) -> Event:
        rng = self.rng
        store = self._store(member.home)
        if home_till is None and rng.random() < 0.12:
            store = rng.choice(self.by_region[store.region])
        till = home_till or rng.choice(store.tills)
        self._receipts += 1
        receipt = f"R{self._receipts}/{store.store_id}/{till}"
        wish = rng.uniform(0.3, 1.0) if rng.random() < 0.2 else 0.0
        when = self.start + dt.timedelta(days=at)
        lines = self.basket(member)
        return Event(when, "visit", member, store.store_id, till, receipt, lines, wish)

    def basket(self, member: Member) -> tuple[tuple[str, int, int], ...]:
        rng = self.rng
        count = 1 + (rng.random() < 0.3 + 0.05 * member.household)
        chosen: list[str] = []
        for mission in rng.choices(MISSIONS, member.missions, k=count):
            chosen.extend(category for category in mission if category not in chosen)
        if rng.random() < 0.3:
            extra = rng.choice(_CATEGORIES)
            if extra not in chosen:
                chosen.append(extra)
        lines = []
        household, random_ = member.household, rng.random
        for category in chosen:
            qty = 1 + rng.randint(0, household)
            amount = int(qty * PRICES[category] * (0.7 + _SPREAD * random_())) // 10 * 10
            lines.append((category, qty, max(10, amount)))
        return tuple(lines)
