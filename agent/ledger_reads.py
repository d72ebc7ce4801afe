"""Reading the ledger: whose points a scan names, and where that member stands.

``LedgerReads`` is the part of ``agent.ledger.Ledger`` that answers from the till's
state (``agent.ledger_context``) without writing, inside an operation's transaction
(``conn``) or on the store's own connection.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent import fields
from agent import offers as till_offers
from agent import suggestions as till_suggestions
from agent.errors import InvalidInput, Refused
from agent.ledger_context import LedgerContext
from agent.projection import Effects
from agent.results import Found, MemberView, OfferShown, Standing
from agent.till_view import redeemable, till_view
from drivers.cards import CardClass, classify
from drivers.codes import VERSION as DYNAMIC_VERSION
from drivers.codes import verify_dynamic_code

_MEMBER_ID = re.compile(r"[0-9a-f]{12}-[0-9]{1,9}", re.ASCII)
_AIM_PREFIX = re.compile(r"\][A-Za-z][0-9A-Za-z]")
DYNAMIC_PREFIX = DYNAMIC_VERSION + "."


@dataclass(frozen=True)
class Account:
    """Whose points: an enrolled member, or a valid programme card not enrolled here."""

    account: str
    member_id: str | None
    card: str | None
    birthday: str | None = None

    def birthday_month(self, day: dt.date) -> bool:
        return bool(self.birthday) and int(str(self.birthday)[5:7]) == day.month


class LedgerReads:
    def __init__(self, context: LedgerContext) -> None:
        self.context = context

    # -- whose points ------------------------------------------------------------

    def resolve(self, ref: str, conn: sqlite3.Connection | None = None) -> Account:
        """A member id, a card's digits, or a QR payload (an AIM prefix is dropped)."""
        conn = conn or self.context.store.conn
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput("invalid_member", "member: give a member id or a card number")
        text = ref.strip()
        if _MEMBER_ID.fullmatch(text):
            found = conn.execute(
                "SELECT birthday FROM members WHERE member_id = ?", (text,)
            ).fetchone()
            if found:
                return Account(text, text, None, found[0])
            raise InvalidInput("unknown_member", f"member: no member {text} on this till")
        if _AIM_PREFIX.match(text):
            text = text[3:]
        if text.startswith(DYNAMIC_PREFIX):
            text = self._dynamic_card(text)
        # A card this till has issued needs no classification: payment numbers and
        # bad check digits never reach the cards table.
        row = conn.execute(
            "SELECT c.account, c.state, m.birthday FROM cards c "
            "LEFT JOIN members m ON m.member_id = c.account WHERE c.card = ?",
            (text,),
        ).fetchone()
        if row is None:
            card = self.program_card(text, "member")
            # A member of another store: known from HQ's directory, earning here on
            # the card's own account until HQ joins them (agent.till_view).
            known = conn.execute(
                "SELECT member_id, state FROM hq_cards WHERE card = ?", (card,)
            ).fetchone()
            if known is not None and known[1] == "blocked":
                raise Refused("card_blocked", "member: this card was replaced and is blocked")
            return Account("C" + card, known[0] if known else None, card)
        if row[1] == "blocked":
            raise Refused("card_blocked", "member: this card was replaced and is blocked")
        # A card this till issued may since have been blocked at HQ (reported lost):
        # HQ's directory says so after the next sync.
        if self.context.cache.blocked_by_hq(conn, text):
            raise Refused("card_blocked", "member: this card is blocked chain-wide by HQ")
        member = row[0] if not str(row[0]).startswith("C") else None
        return Account(str(row[0]), member, text, row[2])

    def _dynamic_card(self, payload: str) -> str:
        """The card inside a member's rotating phone code, once its signature and time
        window check out (docs/readers.md)."""
        scan = verify_dynamic_code(
            payload, self.context.secrets.qr(), time.time(), self.context.config.cards, 0.0
        )
        if scan.kind == "member" and scan.card is not None:
            return scan.card
        code = scan.error or "invalid_code"
        raise InvalidInput(code, f"member: {scan.message or 'the phone code is not valid'}")

    def program_card(self, text: str, field: str) -> str:
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            raise InvalidInput("invalid_card", f"{field}: not a member id or a card number")
        verdict = classify(text, self.context.config.cards)
        if verdict is CardClass.PAYMENT_CARD:
            # Never echo a payment card's digits: not in the message, not in a log.
            raise InvalidInput("payment_card", f"{field}: this is a bank card, not a member card")
        if verdict is CardClass.INVALID_CODE:
            raise InvalidInput("invalid_code", f"{field}: card number has a wrong check digit")
        if verdict is CardClass.FOREIGN_CARD:
            raise InvalidInput("foreign_card", f"{field}: not a card of this programme")
        return text

    def active_card(self, conn: sqlite3.Connection, member_id: str) -> str:
        row = conn.execute(
            "SELECT card FROM cards WHERE account = ? AND state = 'active' "
            "ORDER BY issued_at DESC LIMIT 1",
            (member_id,),
        ).fetchone()
        if row is None:
            raise Refused("no_active_card", "member: has no active card to replace")
        return str(row[0])

    # -- a member's standing -----------------------------------------------------

    def balance_of(
        self, account: str, day: dt.date, conn: sqlite3.Connection, pending: int = 0
    ) -> dict[str, int]:
        """The member's standing as this till can know it (docs/architecture.md, invariant 7):
        once HQ has confirmed a balance, that balance plus this till's entries HQ had
        not yet counted; before, this till's own lots. What may be redeemed is capped by
        the rules' offline limit: of an HQ-confirmed balance at any time between two
        syncs (``agent.till_view.redeemable``), of everything while HQ has not been
        heard from recently (``stale``).

        ``pending`` is the balance change of an entry being written in the current
        transaction: already in the lots, not yet in the journal HQ's view reads."""
        figures = self._local_figures(account, day, conn)
        cache = self.context.cache
        age = cache.hours_since_hq(conn, self.context.clock())
        figures["stale"] = int(age is None or age > self.context.rules.offline_after_hours)
        if cache.has_hq_balance(conn, account):
            view = till_view(conn, account, self.context.device_id) + pending
            figures["balance"] = view
            figures["available"] = redeemable(
                conn,
                account,
                self.context.device_id,
                offline_cap=self.context.rules.offline_cap,
                offline_after_hours=self.context.rules.offline_after_hours,
                now=self.context.clock(),
            )
            figures["capped"] = int(figures["available"] < max(0, view))
            return figures
        if figures["stale"]:
            figures["capped"] = int(figures["available"] > self.context.rules.offline_cap)
            figures["available"] = min(figures["available"], self.context.rules.offline_cap)
        return figures

    def _local_figures(
        self, account: str, day: dt.date, conn: sqlite3.Connection
    ) -> dict[str, int]:
        """Balance and what is spendable today from this till's own lots (pending expiry
        already left out)."""
        iso = day.isoformat()
        soon = (day + dt.timedelta(days=30)).isoformat()
        row = conn.execute(
            "SELECT COALESCE(SUM(points - used), 0), "
            "COALESCE(SUM(CASE WHEN spendable_on <= :day THEN points - used END), 0), "
            "COALESCE(SUM(CASE WHEN expires_on <= :soon THEN points - used END), 0), "
            "(SELECT COALESCE(SUM(points), 0) FROM debts WHERE account = :account) "
            "FROM lots WHERE account = :account AND expired = 0 AND expires_on > :day",
            {"account": account, "day": iso, "soon": soon},
        ).fetchone()
        debt = int(row[3])
        return {
            "balance": int(row[0]) - debt,
            "available": max(0, int(row[1]) - debt),
            "expiring_30d": int(row[2]),
            "debt": debt,
        }

    def spend_12m(self, account: str, day: dt.date, conn: sqlite3.Connection) -> int:
        since = (day - dt.timedelta(days=365)).isoformat()
        row = conn.execute(
            "SELECT COALESCE(SUM(amount - refunded_amount), 0) FROM receipts "
            "WHERE op = 'earn' AND account = ? AND day > ?",
            (account, since),
        ).fetchone()
        return int(row[0])

    def balance(self, ref: str) -> Standing:
        return self._standing(self.resolve(ref))

    def _standing(self, account: Account, offers: tuple[OfferShown, ...] | None = None) -> Standing:
        """``offers``: the member's offers today when the caller already has them
        (``member``); a suggestion shows its offer only while it is one of them."""
        conn, day = self.context.store.conn, self.context.today()
        figures = self.balance_of(account.account, day, conn)
        tier = self.context.rules.tier_for(self.spend_12m(account.account, day, conn))
        if offers is None:
            offers = till_offers.offers_for(conn, account.member_id, day)
        return Standing(
            member_id=account.member_id,
            card=account.card,
            balance=figures["balance"],
            tier=tier.name,
            value=self.context.rules.redemption_value(max(0, figures["balance"])),
            available=figures["available"],
            expiring_30d=figures["expiring_30d"],
            suggestions=till_suggestions.suggestions_for(conn, account.member_id, day, offers),
        )

    def member_card(self, ref: str) -> str:
        """The card a member shows now: the given card, or the member's active card."""
        account = self.resolve(ref)
        if account.card is not None:
            return account.card
        if account.member_id is None:
            raise Refused("no_active_card", "member: has no active card")
        return self.active_card(self.context.store.conn, account.member_id)

    def lookup(self, phone: str, *, ask_hq: Callable[[str], Found | None] | None = None) -> Found:
        """A member by phone: one of this store (enrolled here, or on another till of
        the store: HQ sends phone keys of the store's own members only); else, given
        ``ask_hq`` (the command line passes ``sync.till_lookup``; the agent has no
        network), any member of the chain, asked of HQ by the phone key."""
        online = ask_hq is not None
        number = fields.phone(phone)
        peppers = self.context.secrets.phone()
        keys = [fields.phone_key(number, pepper) for pepper in peppers]
        conn, listed = self.context.store.conn, json.dumps(keys)
        row = (
            conn.execute(
                "SELECT m.member_id, m.name, c.card FROM members m LEFT JOIN cards c "
                "ON c.account = m.member_id AND c.state = 'active' "
                "WHERE m.phone_key IN (SELECT value FROM json_each(?)) "
                "ORDER BY c.issued_at DESC LIMIT 1",
                (listed,),
            ).fetchone()
            or conn.execute(
                "SELECT h.member_id, h.name, c.card FROM hq_members h LEFT JOIN hq_cards c "
                "ON c.member_id = h.member_id AND c.state = 'active' "
                "WHERE h.phone_key IN (SELECT value FROM json_each(?)) LIMIT 1",
                (listed,),
            ).fetchone()
        )
        if row is not None:
            return Found(member_id=row[0], name=row[1], card=row[2])
        if ask_hq is not None:
            found = ask_hq(keys[0])
            if found is not None:
                return found
        raise Refused(
            "unknown_phone",
            "phone: no member of this store with this phone"
            + (
                ", and HQ found none or cannot be reached: find the member by card"
                if online
                else ": a member of another store is found by card (or by `tillpoints "
                "lookup --phone`, which asks HQ)"
            ),
        )

    def member(self, ref: str) -> MemberView:
        """What the counter shows on a scan: name, tier, balance, birthday month, the
        HQ offers valid today that this till has not yet seen taken, and HQ's
        suggestions (``agent.suggestions``)."""
        account = self.resolve(ref)
        conn, day = self.context.store.conn, self.context.today()
        offers = till_offers.offers_for(conn, account.member_id, day)
        return MemberView.of(
            self._standing(account, offers),
            name=self.name_of(conn, account.member_id),
            birthday_month=account.birthday_month(day),
            offers=offers,
        )

    @staticmethod
    def name_of(conn: sqlite3.Connection, member_id: str | None) -> str | None:
        """The member's name as this till knows it (enrolled here, or sent by HQ)."""
        row = conn.execute(
            "SELECT name FROM members WHERE member_id = :id "
            "UNION ALL SELECT name FROM hq_members WHERE member_id = :id LIMIT 1",
            {"id": member_id},
        ).fetchone()
        return str(row[0]) if row and row[0] is not None else None


def net(effects: Effects) -> int:
    """An entry's change to the balance, for ``balance_of``'s ``pending``."""
    return effects["delta"] - effects["expired"]
