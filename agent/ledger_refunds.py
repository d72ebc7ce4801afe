"""Refunds: a sale's points taken back and a redemption's points returned, in whole
or line by line, in proportion to the money refunded."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

from agent import fields
from agent import offers as till_offers
from agent.entries import Kind, Refund, RefundLine
from agent.errors import Refused
from agent.ledger_context import LedgerContext, Record
from agent.ledger_reads import LedgerReads, net
from agent.money import format_amount
from agent.projection import Effects
from agent.results import Refunded


class LedgerRefunds:
    def __init__(self, context: LedgerContext, reads: LedgerReads, record: Record) -> None:
        # record: the ledger's one write path (agent.ledger.Ledger._record)
        self.context, self.reads, self.record = context, reads, record

    def refund(
        self,
        receipt: str,
        lines: tuple[fields.Line, ...] | None = None,
        staff: str | None = None,
        *,
        supervised: bool = True,
    ) -> Refunded:
        """``supervised=False`` (a cashier without a supervisor's PIN) refuses a
        refund that takes the receipt's refunded total (every refund of it so far,
        this one included) above the rules' ``refund.supervisor_above``: splitting
        one large refund into small ones does not get around the supervisor."""
        receipt_id, who = fields.receipt(receipt), fields.staff(staff)
        day = self.context.today()

        def decide(conn: sqlite3.Connection) -> Refund | Refunded:
            plan = self._plan_refund(conn, receipt_id, lines, day)
            limit = self.context.rules.refund_supervisor_above
            if not supervised:
                total = _refunded_before(conn, receipt_id) + plan.amount
                if total > limit:
                    raise Refused(
                        "supervisor_required",
                        f"refunds of receipt {receipt_id} would total {format_amount(total)}, "
                        f"over {format_amount(limit)}: a supervisor's PIN is needed",
                    )
            return plan

        def finish(conn: sqlite3.Connection, seq: int, effects: Effects, body: Refund) -> Refunded:
            figures = self.reads.balance_of(body.account, day, conn, net(effects))
            return Refunded(
                member_id=body.member_id,
                receipt=receipt_id,
                points=effects["delta"],
                taken=body.taken,
                returned=body.returned,
                refunded=body.amount,
                balance=figures["balance"],
                negative=figures["balance"] < 0,
            )

        return self.record(Kind.REFUND, who, decide, finish)

    def _plan_refund(
        self,
        conn: sqlite3.Connection,
        receipt_id: str,
        lines: tuple[fields.Line, ...] | None,
        day: dt.date,
    ) -> Refund:
        earn = conn.execute(
            "SELECT account, amount, refunded_amount, lines FROM receipts "
            "WHERE op = 'earn' AND receipt = ?",
            (receipt_id,),
        ).fetchone()
        redeem = conn.execute(
            "SELECT account, points, returned FROM receipts WHERE op = 'redeem' AND receipt = ?",
            (receipt_id,),
        ).fetchone()
        if earn is None and redeem is None:
            raise Refused("unknown_receipt", f"receipt: no sale {receipt_id} on this till")
        # (line_no, category, qty, amount, points, refunded qty, amount, points)
        sold = [(number, *line) for number, line in enumerate(json.loads(earn[3]) if earn else [])]
        wanted = (
            lines
            if lines is not None
            else tuple(
                fields.Line(row[1], row[2] - row[5], row[3] - row[6])
                for row in sold
                if row[3] > row[6]
            )
        )
        if lines is not None and earn is None:
            raise Refused("refund_exceeds_sale", "line: this receipt recorded no lines")
        capacity = {row[0]: [row[2] - row[5], row[3] - row[6]] for row in sold}
        planned: list[RefundLine] = []
        for index, line in enumerate(wanted):
            slot = next(
                (
                    row
                    for row in sold
                    if row[1] == line.category
                    and capacity[row[0]][0] >= line.qty
                    and capacity[row[0]][1] >= line.amount
                ),
                None,
            )
            if slot is None:
                raise Refused(
                    "refund_exceeds_sale",
                    f"line {index + 1}: more {line.category} refunded than was bought",
                )
            capacity[slot[0]][0] -= line.qty
            capacity[slot[0]][1] -= line.amount
            already = sum(p.amount for p in planned if p.line_no == slot[0])
            before = slot[6] + already
            after = before + line.amount
            # Cumulative rounding: all partial refunds of a line add up to its points.
            taken = slot[4] * after // slot[3] - slot[4] * before // slot[3]
            planned.append(
                RefundLine(line_no=slot[0], qty=line.qty, amount=line.amount, points=taken)
            )
        amount = sum(p.amount for p in planned)
        returned = 0
        if redeem is not None:
            redeemed, given_back = int(redeem[1]), int(redeem[2])
            if earn is None or lines is None:
                returned = redeemed - given_back
            else:
                after = int(earn[2]) + amount
                returned = redeemed * after // int(earn[1]) - given_back
        if not planned and not returned:
            raise Refused("already_refunded", f"receipt: {receipt_id} is already fully refunded")
        # A points-multiplier offer's bonus on this sale goes back in proportion to the
        # money refunded (cumulative rounding, like the lines' points).
        bonus, bonus_taken = till_offers.bonus_on_receipt(conn, receipt_id), 0
        if bonus and earn is not None and amount:
            before, total = int(earn[2]), int(earn[1])
            bonus_taken = bonus * (before + amount) // total - bonus * before // total
        account = str((earn or redeem)[0])
        member = None if account.startswith("C") else account
        return Refund(
            account=account,
            member_id=member,
            receipt=receipt_id,
            lines=tuple(planned),
            amount=amount,
            taken=sum(p.points for p in planned) + bonus_taken,
            returned=returned,
            day=day.isoformat(),
            bonus_taken=bonus_taken or None,
        )


def _refunded_before(conn: sqlite3.Connection, receipt_id: str) -> int:
    """Money already refunded on the sale ``receipt_id`` (0 if it recorded no sale)."""
    row = conn.execute(
        "SELECT refunded_amount FROM receipts WHERE op = 'earn' AND receipt = ?", (receipt_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])
