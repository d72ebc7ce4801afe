"""Campaigns (issue 8, "Offers: back to the counter"): defined at HQ, assigned to offer
or hold-out deterministically, sent down in the signed deltas, taken once per till,
measured by ``hq report campaign_response``, and a second take at another offline
till flagged ``offer_reused``."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.audit import verify_ledger
from agent.errors import LedgerError
from agent.ledger import Ledger
from agent.offers import apply_offers
from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.devices import hq_key, init_hq
from sync.hq.directory import delta
from sync.hq.ingest import ingest
from sync.hq.insight.campaigns import add_campaign, in_holdout, parse_spec
from sync.hq.insight.catalog import run_report
from sync.hq.insight.takes import offer_alerts
from sync.hq.stores import open_store
from sync.till_sync import apply_delta
from tests.sync_helpers import (
    batch_of,
    bind,
    cli,
    entries_of,
    make_till,
    register_till,
    running_hq,
    utc_now,
)

TODAY = dt.date.today()
FROM, TO = (TODAY - dt.timedelta(days=1)).isoformat(), (TODAY + dt.timedelta(days=30)).isoformat()


def _enrol(state: Path, count: int) -> list[tuple[str, str]]:
    """(member id, card) of ``count`` new members, each with one purchase."""
    ledger = Ledger(state)
    try:
        made = []
        for number in range(count):
            member = ledger.enrol(name=f"M{number}", phone=f"06{number:08d}")
            ledger.earn(member.member_id, f"E{number}", amount=2000)
            made.append((str(member.member_id), str(member.card)))
        return made
    finally:
        ledger.close()


def _campaign(url: str, *options: str) -> tuple[int, dict[str, Any]]:
    return cli(None, "hq", "campaign", "add", "--db", url, *options)


def _offers(hq: HQStore, campaign: str) -> dict[str, str]:
    """member id -> offer id of a campaign's offered arm."""
    with hq.read() as tx:
        rows = tx.all(
            "SELECT m.member_id, m.offer_id FROM cmp_members m JOIN cmp_campaigns c "
            "ON c.campaign_id = m.campaign_id WHERE c.name = ? AND m.arm = 'offer'",
            (campaign,),
        )
    return {str(member): str(offer) for member, offer in rows}


# -- end to end: HQ -> till -> counter -> HQ --------------------------------------------


def test_offer_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hq.db"
    hq = open_store(url)
    try:
        init_hq(hq)
        a, b = make_till(tmp_path, "a", "S001", "T01"), make_till(tmp_path, "b", "S001", "T02")
        with running_hq(url, tmp_path / "hq.log") as server:
            register_till(server, hq, a)
            register_till(server, hq, b)
            members = _enrol(a, 8)
            assert cli(a, "sync")[0] == 0
            # Member ids come from a fresh device key: pick a seed that puts some of these
            # eight in each arm (one seed would leave none held out one run in ten).
            seed = _splitting_seed([member for member, _card in members], 2_500, offered=1)
            code, made = _campaign(
                url, "--name", "Double", "--target", "store:S001", "--offer", "multiplier:2",
                "--from", FROM, "--to", TO, "--holdout", "0.25", "--seed", str(seed),
            )  # fmt: skip
            assert code == 0, made
            assert made["targeted"] == 8 and made["offered"] + made["held_out"] == 8
            code, voucher = _campaign(
                url, "--name", "Five off", "--target", "store:S001", "--offer", "voucher:5.00",
                "--from", FROM, "--to", TO,
            )  # fmt: skip
            assert code == 0 and voucher["offered"] == 8, voucher
            double, five = _offers(hq, "Double"), _offers(hq, "Five off")
            member, card = next((m, c) for m, c in members if m in double)
            held = next(m for m, _ in members if m not in double)

            assert cli(a, "sync")[0] == 0 and cli(b, "sync")[0] == 0
            ledger = Ledger(a)
            try:
                shown = {o["offer_id"]: o for o in ledger.member(member).as_json()["offers"]}
                assert set(shown) == {double[member], five[member]}
                assert shown[double[member]]["kind"] == "multiplier"
                assert shown[double[member]]["value"] == "2"
                assert shown[five[member]]["value"] == "5.00"
                assert {o["offer_id"] for o in ledger.member(held).as_json()["offers"]} == {
                    five[held]
                }
            finally:
                ledger.close()

            index = members.index((member, card))
            # Offline from here: HQ is not asked again until both tills sync.
            code, took = cli(
                a, "offer", "take", "--member", member, "--offer", double[member],
                "--receipt", f"E{index}", "--staff", "c1",
            )  # fmt: skip
            assert code == 0, took
            assert took["points"] > 0 and took["kind"] == "multiplier"
            code, again = cli(
                a, "offer", "take", "--member", member, "--offer", double[member],
                "--receipt", f"E{index}",
            )  # fmt: skip
            assert (code, again["error"]) == (3, "offer_taken")
            code, taken = cli(
                a, "offer", "take", "--member", card, "--offer", five[member], "--receipt", "V1"
            )
            assert code == 0 and taken["value"] == "5.00" and taken["points"] == 0, taken
            ledger = Ledger(a)
            try:
                assert ledger.member(member).as_json()["offers"] == []
            finally:
                ledger.close()
            # The second till never heard of the first one's take: it allows it once.
            code, reused = cli(
                b, "offer", "take", "--member", card, "--offer", five[member], "--receipt", "V2"
            )
            assert code == 0, reused
            code, verified = cli(a, "log", "verify")
            assert code == 0 and verified["ok"] is True, verified
            assert cli(a, "sync")[0] == 0 and cli(b, "sync")[0] == 0

        alerts = [alert for alert in offer_alerts(hq) if alert["kind"] == "offer_reused"]
        assert [alert["offer_id"] for alert in alerts] == [five[member]]
        assert alerts[0]["takes"] == 2 and len(alerts[0]["devices"]) == 2
        code, report = cli(None, "hq", "report", "campaign_response", "--db", url)
        assert code == 0, report
        rows = {(row["campaign"], row["segment"]): row for row in report["rows"]}
        assert rows[("Double", "all")]["takers"] == 1
        assert rows[("Double", "all")]["offered"] == made["offered"]
        assert rows[("Double", "all")]["held_out"] == made["held_out"]
        assert rows[("Double", "all")]["bonus_points"] == took["points"]
        assert rows[("Five off", "all")]["takers"] == 1
        assert rows[("Five off", "all")]["voucher_value"] == "10.00"  # taken twice
        code, listed = cli(None, "hq", "campaign", "list", "--db", url)
        assert code == 0 and {c["name"]: c["taken"] for c in listed["campaigns"]} == {
            "Double": 1,
            "Five off": 1,
        }
    finally:
        hq.close()


# -- HQ reports on both backends, in-process ---------------------------------------------


def _upload(hq: HQStore, state: Path, device: str, after: int) -> int:
    entries = [entry for entry in entries_of(state) if entry.seq > after]
    if entries:
        ingest(hq, hq_key(hq), device, batch_of(entries), utc_now(), utc_now())
    return entries[-1].seq if entries else after


def _download(hq: HQStore, state: Path, device: str) -> None:
    ledger = Ledger(state)
    try:
        cursor = 0
        while True:
            document = delta(hq, hq_key(hq), device, cursor, utc_now())["document"]
            with ledger.store.transaction() as conn:
                apply_delta(conn, document)
                apply_offers(conn, document)
            cursor = int(document["cursor"])
            if not document["more"]:
                return
    finally:
        ledger.close()


def _splitting_seed(members: list[str], holdout_bp: int, offered: int = 2) -> int:
    """A seed that holds out at least one of ``members`` and offers at least ``offered``.

    Member ids come from a fresh device key, so a fixed seed would, say, hold out all
    but one of twelve about one run in three hundred (leaving no two takers)."""
    for seed in range(100):
        held = sum(in_holdout(seed, member, holdout_bp) for member in members)
        if 1 <= held <= len(members) - offered:
            return seed
    raise AssertionError("no seed in 100 splits the members")


def test_response_report_on_both_backends(db_url: str, tmp_path: Path) -> None:
    hq = open_store(db_url)
    try:
        state = make_till(tmp_path, "till")
        device = bind(hq, state)
        members = [member for member, _card in _enrol(state, 12)]
        seq = _upload(hq, state, device, 0)
        spec = parse_spec(
            {"name": "Gift", "target": "segment:new", "offer": "gift:Tote bag", "from": FROM,
             "to": TO, "holdout": "0.5", "seed": _splitting_seed(members, 5_000)}
        )  # fmt: skip
        made = add_campaign(hq, spec, utc_now())
        assert made["targeted"] == 12 and 0 < made["held_out"] < 12
        offers = _offers(hq, "Gift")
        _download(hq, state, device)
        ledger = Ledger(state)
        try:
            takers = sorted(offers)[:2]
            for number, member in enumerate(takers):
                ledger.take_offer(member, offers[member], f"G{number}")
                ledger.earn(member, f"X{number}", amount=5000)
            assert ledger.member(takers[0]).as_json()["offers"] == []
        finally:
            ledger.close()
        _upload(hq, state, device, seq)
        report = run_report(hq, "campaign_response")
        rows = {row["segment"]: row for row in report["rows"]}
        assert set(rows) == {"new", "all"}
        row = rows["all"]
        assert (row["offered"], row["held_out"], row["takers"]) == (
            made["offered"],
            made["held_out"],
            2,
        )
        offered_spend = 2000 * made["offered"] + 5000 * 2
        assert row["spend_offered"] == f"{offered_spend // 100}.{offered_spend % 100:02d}"
        assert row["spend_per_held_out"] == "20.00"
        assert report["totals"]["takers"] == 2
        assert offer_alerts(hq) == []
        assert run_report(hq, "campaign_response", campaign="Gift")["rows"] == report["rows"]
        with pytest.raises(SyncError, match="no campaign") as unknown:
            run_report(hq, "campaign_response", campaign="Nope")
        assert unknown.value.code == "unknown_campaign"
        with pytest.raises(SyncError) as misplaced:
            run_report(hq, "liability", campaign="Gift")
        assert (misplaced.value.code, misplaced.value.exit_status) == ("invalid_option", 2)
        # A campaign that has not started by --to is not in the report yet.
        before = (TODAY - dt.timedelta(days=2)).isoformat()
        assert run_report(hq, "campaign_response", end=before)["rows"] == []
    finally:
        hq.close()


def test_multiplier_bonus_is_a_points_lot(db_url: str, tmp_path: Path) -> None:
    """The bonus a multiplier credits expires on its own date like an earn's lot, so
    the liability report must not count it as expiring soon: every point of the
    member's balance is in a lot that expires in two years, none within 90 days."""
    hq = open_store(db_url)
    try:
        state = make_till(tmp_path, "till")
        device = bind(hq, state)
        ((member, _),) = _enrol(state, 1)
        seq = _upload(hq, state, device, 0)
        spec = parse_spec(
            {"name": "Double", "target": "store:S001", "offer": "multiplier:2", "from": FROM,
             "to": TO}
        )  # fmt: skip
        add_campaign(hq, spec, utc_now())
        _download(hq, state, device)
        ledger = Ledger(state)
        try:
            took = ledger.take_offer(member, _offers(hq, "Double")[member], "E0")
            balance = ledger.balance(member).balance
        finally:
            ledger.close()
        assert took.points > 0
        _upload(hq, state, device, seq)
        totals = run_report(hq, "liability")["totals"]
        assert (totals["points"], totals["expiring_30d"], totals["expiring_90d"]) == (
            balance,
            0,
            0,
        )
        with hq.read() as tx:
            lots = tx.all("SELECT points FROM ins_lots WHERE member = ?", (member,))
        assert took.points in [int(points) for (points,) in lots]
        assert sum(int(points) for (points,) in lots) == balance
    finally:
        hq.close()


# -- assignment and bad input ---------------------------------------------------------------


def test_holdout_assignment_is_deterministic() -> None:
    members = [f"{secrets.token_hex(6)}-{n}" for n in range(4000)]
    first = [in_holdout(11, m, 1000) for m in members]
    assert first == [in_holdout(11, m, 1000) for m in members]
    assert 300 < sum(first) < 500  # about 10 % of 4000
    assert first != [in_holdout(12, m, 1000) for m in members]
    assert not any(in_holdout(11, m, 0) for m in members)
    # Without --seed, the seed comes from the name: reproducible, different per campaign.
    one = {"target": "store:S1", "offer": "voucher:1", "from": FROM, "to": TO}
    assert parse_spec({**one, "name": "A"}).seed == parse_spec({**one, "name": "A"}).seed
    assert parse_spec({**one, "name": "A"}).seed != parse_spec({**one, "name": "B"}).seed


@pytest.fixture
def hq_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/hq.db"
    hq = open_store(url)
    try:
        init_hq(hq)
        yield url
    finally:
        hq.close()


GOOD = ("--name", "N", "--target", "segment:loyal", "--offer", "multiplier:2", "--from", FROM,
        "--to", TO)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (("--target", "segment:vip"), "unknown_segment"),
        (("--target", "planet:mars"), "invalid_target"),
        (("--target", "members:/nonexistent/list.txt"), "invalid_target"),
        (("--from", "2026-02-30"), "invalid_date"),
        (("--to", "2020-01-01"), "invalid_date"),
        (("--offer", "multiplier:1"), "invalid_offer"),
        (("--offer", "multiplier:abc"), "invalid_offer"),
        (("--offer", "voucher:5.001"), "invalid_offer"),
        (("--offer", "voucher:-5"), "invalid_offer"),
        (("--offer", "coupon:5"), "invalid_offer"),
        (("--offer", "gift:"), "invalid_offer"),
        (("--holdout", "0.95"), "invalid_holdout"),
        (("--holdout", "-0.1"), "invalid_holdout"),
        (("--holdout", "NaN"), "invalid_holdout"),
        (("--name", "!"), "invalid_name"),
        (("--target", "model:0"), "invalid_target"),
        (("--target", "model:Past:many"), "invalid_target"),
    ],
)
def test_bad_campaigns_are_refused_and_write_nothing(
    hq_url: str, change: tuple[str, str], code: str
) -> None:
    options = list(GOOD)
    if change[0] in options:
        options[options.index(change[0]) + 1] = change[1]
    else:
        options += list(change)
    status, answer = _campaign(hq_url, *options)
    assert (status, answer["error"]) == (2, code), answer
    assert answer["message"]
    hq = open_store(hq_url)
    try:
        with hq.read() as tx:
            exists = tx.one("SELECT COUNT(*) FROM sqlite_master WHERE name = 'cmp_campaigns'")
            rows = tx.one("SELECT COUNT(*) FROM cmp_campaigns") if exists and exists[0] else (0,)
        assert rows is not None and rows[0] == 0
    finally:
        hq.close()


def test_unknown_store_empty_target_and_duplicate_name(tmp_path: Path, hq_url: str) -> None:
    hq = open_store(hq_url)
    try:
        state = make_till(tmp_path, "till")
        device = bind(hq, state)
        _enrol(state, 2)
        _upload(hq, state, device, 0)
    finally:
        hq.close()
    base = ("--offer", "gift:Mug", "--from", FROM, "--to", TO)
    status, answer = _campaign(hq_url, "--name", "X", "--target", "store:S999", *base)
    assert (status, answer["error"]) == (2, "unknown_store")
    status, answer = _campaign(hq_url, "--name", "X", "--target", "segment:champions", *base)
    assert (status, answer["error"]) == (3, "empty_target")
    ids = tmp_path / "ids.txt"
    ids.write_text("member_id\nnobody-1\n")
    status, answer = _campaign(hq_url, "--name", "X", "--target", f"members:{ids}", *base)
    assert (status, answer["error"]) == (2, "unknown_member")
    toml = tmp_path / "c.toml"
    toml.write_text(
        f'[campaign]\nname = "Mugs"\ntarget = "store:S001"\noffer = "gift:Mug"\n'
        f"from = {FROM}\nto = {TO}\nholdout = 0.5\nseed = 1\n"
    )
    status, answer = cli(None, "hq", "campaign", "add", "--db", hq_url, "--file", str(toml))
    assert status == 0 and answer["targeted"] == 2, answer
    status, answer = cli(None, "hq", "campaign", "add", "--db", hq_url, "--file", str(toml))
    assert (status, answer["error"]) == (3, "campaign_exists")


def test_take_offer_refusals(ledger: Ledger) -> None:
    member = ledger.enrol(name="A", phone="0611112222").member_id
    with ledger.store.transaction() as conn:
        apply_offers(
            conn,
            {
                "offers": [
                    {"offer_id": "k1-1", "member_id": member, "campaign": "k1",
                     "kind": "multiplier", "value": "1.5", "title": "1.5x points",
                     "valid_from": "2026-03-01", "valid_to": "2026-03-31"},
                    {"offer_id": "k2-1", "member_id": member, "campaign": "k2", "kind": "gift",
                     "value": "Mug", "title": "Mug", "valid_from": "2026-04-01",
                     "valid_to": "2026-04-30"},
                ]
            },
        )  # fmt: skip
    before = ledger.head()
    for offer, receipt, code in (
        ("k1-1", "R1", "offer_needs_earn"),
        ("k2-1", "R1", "offer_not_started"),
        ("zz-9", "R1", "unknown_offer"),
    ):
        with pytest.raises(LedgerError) as raised:
            ledger.take_offer(member, offer, receipt)
        assert raised.value.code == code
    with pytest.raises(LedgerError) as raised:
        ledger.take_offer(member, "bad id!", "R1")
    assert raised.value.code == "invalid_offer"
    assert ledger.head() == before
    earned = ledger.earn(member, "R1", amount=1000).points
    before_take = ledger.balance(member).balance
    took = ledger.take_offer(member, "k1-1", "R1")
    assert took.points == earned // 2
    assert took.balance == before_take + took.points
    assert ledger.member(member).as_json()["offers"] == []
    with pytest.raises(LedgerError) as raised:
        ledger.take_offer(member, "k1-1", "R1")
    assert (raised.value.code, raised.value.http_status) == ("offer_taken", 409)
    assert verify_ledger(ledger).ok
