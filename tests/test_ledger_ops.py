"""The ledger's operations through its Python API, with a clock the test controls."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from agent.errors import InvalidInput, Refused
from agent.fields import Line
from agent.ledger import KEY_FILE, Ledger
from agent.rules import default_rules_text
from drivers.cards import luhn_ok
from tests.conftest import Clock, journal_count

CARD_A = "9900835840532866"
CARD_B = "9900568732746027"
CARD_C = "9900390788616925"
VISA = "4111111111111111"


def lines(*items: tuple[str, int, int]) -> tuple[Line, ...]:
    return tuple(Line(category, qty, amount) for category, qty, amount in items)


def test_init_makes_private_key_and_directory(ledger: Ledger) -> None:
    state = ledger.state_dir
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / KEY_FILE).st_mode) == 0o600
    assert len(ledger.device_id) == 12
    first = next(ledger.entries())
    assert (first.seq, first.kind, first.body["store"]) == (1, "init", "S001")


def test_init_twice_is_refused(ledger: Ledger) -> None:
    with pytest.raises(Refused) as caught:
        Ledger.init(ledger.state_dir, "S001", "T01")
    assert caught.value.code == "already_initialised"


def test_enrol_issues_an_ecard_and_the_bonus(ledger: Ledger) -> None:
    result = ledger.enrol(name="王小明", phone="+86 138 0013 8000", birthday="1990-05-01")
    card = result.card
    assert result.card_kind == "ecard"
    assert card.startswith("9900") and len(card) == 16 and luhn_ok(card)
    assert result.balance == 100
    member = ledger.member(result.member_id)
    assert member.name == "王小明"  # stored verbatim, any script


def test_member_ids_carry_the_device(ledger: Ledger) -> None:
    first = ledger.enrol(name="A", phone="5550001").member_id
    second = ledger.enrol(name="B", phone="5550002").member_id
    assert first == f"{ledger.device_id}-1" and second == f"{ledger.device_id}-2"


def test_phone_is_not_stored_in_clear(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="+44 7700 900123")
    raw = (ledger.state_dir / "ledger.db").read_bytes()
    wal = ledger.state_dir / "ledger.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"7700900123" not in raw and b"447700900123" not in raw
    assert ledger.lookup("+447700900123").name == "A"


def test_duplicate_phone_names_the_existing_member(ledger: Ledger) -> None:
    first = ledger.enrol(name="A", phone="555-0100-22").member_id
    before = journal_count(ledger)
    with pytest.raises(Refused) as caught:
        ledger.enrol(name="B", phone="555 0100 22")
    assert caught.value.code == "duplicate_phone" and first in caught.value.message
    assert journal_count(ledger) == before


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "x" * 81}, "invalid_name"),
        ({"name": "bad\x07name"}, "invalid_name"),
        ({"phone": "12"}, "invalid_phone"),
        ({"phone": "call me"}, "invalid_phone"),
        ({"birthday": "1990-02-30"}, "invalid_birthday"),
        ({"birthday": "2030-01-01"}, "invalid_birthday"),
        ({"birthday": "01/02/1990"}, "invalid_birthday"),
        ({"birthday": "1850-01-01"}, "invalid_birthday"),
        ({"gender": "female"}, "invalid_gender"),
        ({"household": "0"}, "invalid_household"),
        ({"household": "2.5"}, "invalid_household"),
        ({"card": "9900835840532869"}, "invalid_code"),
        ({"card": VISA}, "payment_card"),
        ({"card": "6000000042"}, "foreign_card"),
        ({"card": "99008358405328661234"}, "invalid_card"),
    ],
)
def test_bad_enrolment_input_writes_nothing(ledger: Ledger, kwargs: dict, code: str) -> None:
    fields = {"name": "Ann", "phone": "5551234567", **kwargs}
    before = journal_count(ledger)
    with pytest.raises(InvalidInput) as caught:
        ledger.enrol(**fields)
    assert caught.value.code == code
    assert journal_count(ledger) == before
    assert VISA not in caught.value.message


def test_card_in_use_is_refused(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    with pytest.raises(Refused) as caught:
        ledger.enrol(name="B", phone="5550002", card=CARD_A)
    assert caught.value.code == "card_in_use"


def test_card_replace_blocks_the_old_card(ledger: Ledger) -> None:
    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    ledger.earn(CARD_A, "R1", amount=5000)
    result = ledger.card_replace(CARD_A, CARD_B, staff="sup1")
    assert result.as_json() == {"member_id": member, "card": CARD_B, "blocked": CARD_A}
    assert ledger.balance(CARD_B).balance == 150  # nothing else moved
    for action in (
        lambda: ledger.earn(CARD_A, "R2", amount=100),
        lambda: ledger.redeem(CARD_A, "R3", 100),
    ):
        with pytest.raises(Refused) as caught:
            action()
        assert caught.value.code == "card_blocked"
    assert ledger.lookup("5550001").card == CARD_B


def test_earn_applies_categories_exclusions_and_rounding(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    result = ledger.earn(
        CARD_A,
        "R1",
        lines=lines(("grocery", 2, 1099), ("tobacco", 1, 800), ("fresh", 1, 550)),
    )
    # grocery 10.99 -> 10 (floor per line); tobacco earns nothing; fresh 5.50 x2 -> 11
    assert result.points == 21
    assert result.balance == 121 and result.replayed is False


def test_earn_replay_and_conflict(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    first = ledger.earn(CARD_A, "R1", amount=2000)
    count = journal_count(ledger)
    again = ledger.earn(CARD_A, "R1", amount=2000)
    assert again.as_json() == {**first.as_json(), "replayed": True}
    assert journal_count(ledger) == count
    with pytest.raises(Refused) as caught:
        ledger.earn(CARD_A, "R1", amount=2001)
    assert caught.value.code == "receipt_conflict"
    assert journal_count(ledger) == count


def test_offline_earn_for_an_unknown_programme_card(ledger: Ledger) -> None:
    result = ledger.earn(CARD_C, "R1", amount=1234)
    assert result.member_id is None and result.points == 12
    assert ledger.balance(CARD_C).balance == 12
    # Enrolling that card later carries its points over to the new member.
    member = ledger.enrol(name="Late", phone="5550009", card=CARD_C)
    assert member.balance == 112
    assert ledger.balance(member.member_id).balance == 112


def test_tiers_follow_rolling_twelve_month_spend(ledger: Ledger, clock: Clock) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", amount=50000)
    assert ledger.balance(CARD_A).tier == "silver"
    assert ledger.earn(CARD_A, "R2", amount=10000).points == 125  # silver x1.25
    clock.advance(days=366)
    assert ledger.balance(CARD_A).tier == "basic"


def test_promotions_and_birthday_month(ledger: Ledger, clock: Clock) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A, birthday="1990-03-20")
    assert ledger.earn(CARD_A, "R1", amount=1000).points == 20  # birthday month x2
    clock.advance(days=6)  # Tuesday 17 March: double points day, and still March
    assert ledger.earn(CARD_A, "R2", amount=1000).points == 40
    clock.advance(days=21)  # Tuesday 7 April
    assert ledger.earn(CARD_A, "R3", amount=1000).points == 20


def test_redeem_checks_and_values(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", amount=40000)  # 400 points + 100 bonus
    count = journal_count(ledger)
    for points, code in ((99, "below_minimum"), (501, "insufficient_points")):
        with pytest.raises(Refused) as caught:
            ledger.redeem(CARD_A, "P1", points)
        assert caught.value.code == code
    with pytest.raises(Refused) as caught:
        ledger.redeem(CARD_A, "R1", 500)  # 5.00 of a 400.00 receipt is fine ...
        ledger.redeem(CARD_A, "R1", 100)
    assert caught.value.code == "receipt_conflict"
    for points in ("0", "-5", "1.5", "1e3", "999999999999"):
        with pytest.raises(InvalidInput) as bad:
            ledger.redeem(CARD_A, "P2", points)
        assert bad.value.code == "invalid_points"
    assert journal_count(ledger) == count + 1
    assert ledger.balance(CARD_A).balance == 0


def test_redeem_respects_the_receipt_share(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", amount=100000)
    with pytest.raises(Refused) as caught:
        ledger.redeem(CARD_A, "P1", 300, amount=500)  # 3.00 > half of 5.00
    assert caught.value.code == "over_receipt_share"
    result = ledger.redeem(CARD_A, "P1", 250, amount=500)
    assert result.as_json()["value"] == "2.50" and result.balance == 850


def test_lock_window_holds_points_back(tmp_path, clock: Clock) -> None:
    rules = default_rules_text().replace("days = 0", "days = 7")
    ledger = Ledger.init(tmp_path / "locked", "S001", "T01", rules, clock=clock)
    try:
        ledger.enrol(name="A", phone="5550001", card=CARD_A)
        ledger.earn(CARD_A, "R1", amount=50000)
        figures = ledger.balance(CARD_A)
        assert (figures.balance, figures.available) == (600, 100)
        with pytest.raises(Refused):
            ledger.redeem(CARD_A, "P1", 200)
        clock.advance(days=7)
        assert ledger.redeem(CARD_A, "P1", 600).balance == 0
    finally:
        ledger.close()


def test_points_expire_oldest_first(ledger: Ledger, clock: Clock) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)  # 100 bonus, day 0
    clock.advance(days=400)
    ledger.earn(CARD_A, "R1", amount=30000)  # 300 points, day 400
    ledger.redeem(CARD_A, "P1", 150)  # spends the 100 bonus first, then 50
    clock.advance(days=340)  # day 740: the bonus lot (24 months) has expired
    figures = ledger.balance(CARD_A)
    assert figures.balance == 250
    clock.advance(days=400)  # past the second lot's expiry too
    assert ledger.balance(CARD_A).balance == 0


def test_expiring_soon_is_reported(ledger: Ledger, clock: Clock) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    clock.advance(days=700)  # the bonus expires on day 731
    assert ledger.balance(CARD_A).expiring_30d == 0
    clock.advance(days=10)
    assert ledger.balance(CARD_A).expiring_30d == 100


def test_partial_refunds_take_back_proportional_points(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", lines=lines(("grocery", 3, 1000), ("fresh", 1, 500)))
    # grocery 10 points, fresh 10 points
    first = ledger.refund("R1", lines(("grocery", 1, 333)))
    second = ledger.refund("R1", lines(("grocery", 1, 333)))
    third = ledger.refund("R1", lines(("grocery", 1, 334)))
    assert [r.taken for r in (first, second, third)] == [3, 3, 4]  # adds up to 10
    with pytest.raises(Refused) as caught:
        ledger.refund("R1", lines(("grocery", 1, 1)))
    assert caught.value.code == "refund_exceeds_sale"
    with pytest.raises(Refused) as caught:
        ledger.refund("R1", lines(("fresh", 2, 500)))
    assert caught.value.code == "refund_exceeds_sale"
    rest = ledger.refund("R1")
    assert rest.taken == 10 and ledger.balance(CARD_A).balance == 100
    with pytest.raises(Refused) as caught:
        ledger.refund("R1")
    assert caught.value.code == "already_refunded"


def test_refund_returns_redeemed_points(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", amount=20000)  # 200 + 100
    ledger.redeem(CARD_A, "R2", 300)
    result = ledger.refund("R2")
    assert (result.returned, result.points, result.balance) == (300, 300, 300)


def test_refund_of_spent_points_leaves_a_debt(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", amount=20000)
    ledger.redeem(CARD_A, "P1", 300)
    result = ledger.refund("R1")
    assert result.balance == -200 and result.negative is True
    ledger.earn(CARD_A, "R2", amount=15000)
    with pytest.raises(Refused) as caught:
        ledger.redeem(CARD_A, "P2", 100)
    assert caught.value.code == "negative_balance"
    ledger.earn(CARD_A, "R3", amount=15000)  # the debt is paid off first
    assert ledger.balance(CARD_A).balance == 100
    assert ledger.redeem(CARD_A, "P2", 100).balance == 0


def test_unknown_receipt_and_member(ledger: Ledger) -> None:
    with pytest.raises(Refused) as caught:
        ledger.refund("NOPE")
    assert caught.value.code == "unknown_receipt"
    with pytest.raises(InvalidInput) as bad:
        ledger.balance(f"{ledger.device_id}-99")
    assert bad.value.code == "unknown_member"


def test_adjustments_need_staff_and_a_reason(ledger: Ledger) -> None:
    member = ledger.enrol(name="A", phone="5550001").member_id
    assert ledger.adjust(member, "-40", "damaged coupon", "sup1").balance == 60
    assert ledger.adjust(member, "25", "goodwill", "sup1").balance == 85
    entry = list(ledger.entries())[-1]
    assert (entry.kind, entry.staff, entry.body["reason"]) == ("adjust", "sup1", "goodwill")
    with pytest.raises(Refused):
        ledger.adjust(member, "-86", "too much", "sup1")
    with pytest.raises(InvalidInput):
        ledger.adjust(member, "5", " ", "sup1")
    with pytest.raises(InvalidInput):
        ledger.adjust(member, "5", "why", "")


def test_every_entry_records_the_staff_id(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A, staff="c7")
    ledger.earn(CARD_A, "R1", amount=1000, staff="c7")
    assert [entry.staff for entry in ledger.entries()][1:] == ["c7", "c7"]


def test_business_day_is_the_tills_local_date(ledger: Ledger, clock: Clock) -> None:
    clock.now = dt.datetime(2026, 3, 11, 23, 30, tzinfo=clock.now.tzinfo)
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    entry = list(ledger.entries())[-1]
    assert entry.body["day"] == "2026-03-11" and entry.ts.startswith("2026-03-11T15:30")


def test_offline_cap_limits_redemption_before_any_sync(ledger: Ledger) -> None:
    ledger.enrol(name="A", phone="5550001", card=CARD_A)
    ledger.earn(CARD_A, "R1", amount=300000)
    figures = ledger.balance(CARD_A)
    assert figures.balance == 3100 and figures.available == 2000
    with pytest.raises(Refused) as caught:
        ledger.redeem(CARD_A, "P1", 2100)
    assert caught.value.code == "offline_cap"
    assert ledger.redeem(CARD_A, "P2", 2000).balance == 1100


def test_members_of_other_stores_redeem_from_the_hq_balance(ledger: Ledger, clock: Clock) -> None:
    """As after a download: HQ says CARD_B belongs to another store's member with 500
    points. This till draws on that balance and can give it back on a refund."""
    from agent.audit import verify_ledger

    with ledger.store.transaction() as conn:
        conn.execute("INSERT INTO hq_members (member_id, name) VALUES ('aaaabbbbcccc-7', 'Bo')")
        conn.execute("INSERT INTO hq_cards VALUES (?, 'aaaabbbbcccc-7', 'active')", (CARD_B,))
        conn.execute(
            "INSERT INTO hq_balances VALUES ('aaaabbbbcccc-7', 500, ?, 0)",
            (clock.now.isoformat(),),
        )
        conn.execute("INSERT INTO sync_state VALUES ('last_download', ?)", (clock.now.isoformat(),))
    member = ledger.member(CARD_B)
    assert (member.name, member.balance, member.available) == ("Bo", 500, 500)
    assert ledger.earn(CARD_B, "R1", amount=1000).balance == 510
    assert ledger.redeem(CARD_B, "P1", 400).balance == 110
    assert ledger.refund("P1").balance == 510
    assert verify_ledger(ledger).ok


def test_a_refund_takes_back_a_multiplier_offers_bonus(ledger: Ledger, clock: Clock) -> None:
    """Buy, take a double-points offer on the receipt, return the goods: the bonus
    goes back with the sale's own points, in proportion to the money refunded."""
    member = ledger.enrol(name="A", phone="5550001", card=CARD_A).member_id
    with ledger.store.transaction() as conn:
        conn.execute(
            "INSERT INTO hq_offers VALUES ('X2', ?, 'spring', 'multiplier', '2', 'Double', ?, ?)",
            (member, clock.now.date().isoformat(), clock.now.date().isoformat()),
        )
    ledger.earn(CARD_A, "R1", lines=lines(("grocery", 2, 10000)))  # 100 points
    assert ledger.take_offer(CARD_A, "X2", "R1").points == 100
    assert ledger.balance(CARD_A).balance == 300
    half = ledger.refund("R1", lines(("grocery", 1, 5000)))
    assert (half.taken, half.balance) == (100, 200)
    rest = ledger.refund("R1")
    assert (rest.taken, rest.balance) == (100, 100)
    from agent.audit import verify_ledger

    assert verify_ledger(ledger).ok


def test_the_earn_bench_reports_each_figure_against_the_raw_limit(tmp_path: Path) -> None:
    from tillpoints.bench import earn_figures

    figures = earn_figures(tmp_path, rounds=1, seconds=0.05, members=5)
    earns, rows = figures["durable_earns_per_s"], figures["earn_rows_commits_per_s"]
    assert earns["value"] > 0 and rows["value"] > 0
    assert earns["limit"] == rows["limit"] > 0
    assert abs(earns["ratio"] - earns["value"] / earns["limit"]) < 0.01
    assert figures["earn_latency_p99_ms"]["unit"] == "ms"
