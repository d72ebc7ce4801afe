"""Taking HQ's offers at the counter: a voucher, a gift or a points multiplier
(``agent.offers`` holds the offers HQ sent to this till)."""

from __future__ import annotations

import sqlite3
from fractions import Fraction

from agent import fields
from agent import offers as till_offers
from agent.entries import Kind, OfferTake
from agent.errors import InvalidInput, Refused
from agent.ledger_context import LedgerContext, Record
from agent.ledger_reads import Account, LedgerReads, net
from agent.money import parse_amount
from agent.projection import Effects
from agent.results import OfferTaken


class LedgerOffers:
    def __init__(self, context: LedgerContext, reads: LedgerReads, record: Record) -> None:
        # record: the ledger's one write path (agent.ledger.Ledger._record)
        self.context, self.reads, self.record = context, reads, record

    def take_offer(
        self, ref: str, offer: str, receipt: str, staff: str | None = None
    ) -> OfferTaken:
        """Take an HQ offer at the counter, at most once per till (``offer_taken``).

        A voucher or a gift is recorded with its value and changes no points. A points
        multiplier ``m`` credits ``(m - 1)`` times the points of the receipt's earn on
        this till (``offer_needs_earn`` if there is none yet)."""
        offer_id, receipt_id, who = _offer_id(offer), fields.receipt(receipt), fields.staff(staff)
        day = self.context.today()

        def decide(conn: sqlite3.Connection) -> OfferTake | OfferTaken:
            account = self.reads.resolve(ref, conn)
            done = till_offers.taken(conn, offer_id)
            if done is not None:
                raise Refused(
                    "offer_taken",
                    f"offer: {offer_id} was already taken on this till (receipt {done[1]})",
                    {"receipt": done[1]},
                )
            held = till_offers.offer(conn, offer_id)
            if held is None or account.member_id is None or held["member_id"] != account.member_id:
                raise Refused("unknown_offer", f"offer: no offer {offer_id} for this member here")
            if day.isoformat() < held["valid_from"]:
                raise Refused("offer_not_started", f"offer: valid from {held['valid_from']}")
            if day.isoformat() > held["valid_to"]:
                raise Refused("offer_expired", f"offer: expired on {held['valid_to']}")
            points, money = 0, 0
            if held["kind"] == "multiplier":
                points = self._multiplier_bonus(conn, account, receipt_id, held["value"])
            elif held["kind"] == "voucher":
                money = parse_amount(held["value"], "value")
            return OfferTake(
                account=account.account,
                member_id=account.member_id,
                offer_id=offer_id,
                campaign=held["campaign"],
                offer_kind=held["kind"],
                offer_value=held["value"],
                title=held["title"],
                receipt=receipt_id,
                points=points,
                value=money,
                day=day.isoformat(),
                lot=self.context.lot_dates(day) if points else None,
            )

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, body: OfferTake
        ) -> OfferTaken:
            return OfferTaken(
                member_id=body.member_id,
                offer_id=offer_id,
                receipt=receipt_id,
                kind=body.offer_kind,
                title=body.title,
                points=body.points,
                value=body.value,
                balance=self.reads.balance_of(body.account, day, conn, net(effects))["balance"],
            )

        return self.record(Kind.OFFER_TAKE, who, decide, finish)

    def _multiplier_bonus(
        self, conn: sqlite3.Connection, account: Account, receipt_id: str, multiplier: str
    ) -> int:
        earn = conn.execute(
            "SELECT account, points FROM receipts WHERE op = 'earn' AND receipt = ?",
            (receipt_id,),
        ).fetchone()
        if earn is None:
            raise Refused(
                "offer_needs_earn",
                f"receipt: a points multiplier applies to a sale's points: record the earn "
                f"for {receipt_id} on this till first",
            )
        owner = str(earn[0])
        if owner.startswith("C") and account.member_id is not None:
            row = conn.execute(
                "SELECT member_id FROM hq_cards WHERE card = ?", (owner[1:],)
            ).fetchone()
            owner = str(row[0]) if row else owner
        if owner not in (account.account, account.member_id):
            raise Refused("receipt_other_member", f"receipt: {receipt_id} is another member's")
        try:
            factor = Fraction(multiplier)
        except ValueError:
            raise Refused("unknown_offer", "offer: its multiplier is not a number") from None
        return max(0, int(int(earn[1]) * (factor - 1)))


def _offer_id(value: object) -> str:
    if not isinstance(value, str) or not till_offers.OFFER_ID.fullmatch(value):
        raise InvalidInput(
            "invalid_offer", "offer: 1 to 64 characters of letters, digits and . _ -"
        )
    return value
