"""The till's ledger: members, cards and points, one journal entry per fact.

Every operation follows the same shape: validate the input (``agent.fields``),
then in one ``BEGIN IMMEDIATE`` transaction read the state it needs, decide by the
rules, apply the entry to the projection (``agent.projection``), sign and append
the journal entry, and commit. If anything fails, nothing is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import fields
from agent.config import Config
from agent.errors import InvalidInput, LedgerError, Refused
from agent.money import format_amount, parse_amount
from agent.projection import Effects, apply, result_text
from agent.rules import Rules, default_rules_text, load_rules_text
from agent.store import Store, storage_error
from drivers.cards import CardClass, classify, luhn_digit
from drivers.codes import VERSION as DYNAMIC_VERSION
from drivers.codes import verify_dynamic_code
from sync import till_offers
from sync.chain import GENESIS_PREV, Entry, canonical, sign_entry_bytes
from sync.keys import device_id_for, public_key_text, read_private_key, write_private_key
from sync.till_view import has_hq_balance, hours_since_hq, redeemable, till_view

DB_FILE, KEY_FILE, RULES_FILE = "ledger.db", "device.key", "rules.toml"
_MEMBER_ID = re.compile(r"[0-9a-f]{12}-[0-9]{1,9}", re.ASCII)
_AIM_PREFIX = re.compile(r"\][A-Za-z][0-9A-Za-z]")
DYNAMIC_PREFIX = DYNAMIC_VERSION + "."

Clock = Callable[[], dt.datetime]


def local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


@dataclass(frozen=True)
class Account:
    """Whose points: an enrolled member, or a valid programme card not enrolled here."""

    account: str
    member_id: str | None
    card: str | None
    birthday: str | None = None

    def birthday_month(self, day: dt.date) -> bool:
        return bool(self.birthday) and int(str(self.birthday)[5:7]) == day.month


class Ledger:
    def __init__(
        self, state_dir: Path, config: Config | None = None, clock: Clock = local_now
    ) -> None:
        self.state_dir, self.config, self.clock = state_dir, config or Config(), clock
        self.store = Store(state_dir / DB_FILE)
        try:
            self.key = read_private_key(state_dir / KEY_FILE)
            rules_text = (state_dir / RULES_FILE).read_text("utf-8")
        except (OSError, ValueError) as error:
            self.store.close()
            raise LedgerError(
                "broken_state", f"state in {state_dir} is incomplete: {error}"
            ) from None
        self.rules: Rules = load_rules_text(rules_text, str(state_dir / RULES_FILE))
        self.device_id = self.store.meta("device_id") or ""
        self.store_id = self.store.meta("store") or ""
        self.till_id = self.store.meta("till") or ""

    # -- set-up ------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        state_dir: Path,
        store: str,
        till: str,
        rules_text: str | None = None,
        config: Config | None = None,
        clock: Clock = local_now,
    ) -> Ledger:
        """Create the state directory (0700), the device key (0600), the ledger and
        its first journal entry, which names the device and its public key."""
        text = rules_text if rules_text is not None else default_rules_text()
        load_rules_text(text)
        if (state_dir / DB_FILE).exists():
            raise Refused("already_initialised", f"{state_dir} already holds a till ledger")
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            key = Ed25519PrivateKey.generate()
            key_path = state_dir / KEY_FILE
            if key_path.exists():
                key_path.unlink()
            write_private_key(key_path, key)
            (state_dir / RULES_FILE).write_text(text, "utf-8")
            created = Store(state_dir / DB_FILE, create=True)
        except (OSError, sqlite3.Error) as error:
            raise storage_error(error, state_dir) from None
        public = key.public_key()
        device_id = device_id_for(public)
        try:
            with created.transaction() as conn:
                for name, value in (
                    ("store", store),
                    ("till", till),
                    ("device_id", device_id),
                    ("public_key", public_key_text(public)),
                ):
                    created.set_meta(conn, name, value)
        finally:
            created.close()
        ledger = cls(state_dir, config, clock)
        ledger._record(
            "init",
            None,
            {
                "store": store,
                "till": till,
                "device_id": device_id,
                "public_key": public_key_text(public),
            },
        )
        return ledger

    def close(self) -> None:
        self.store.close()

    @property
    def public_key(self) -> str:
        return self.store.meta("public_key") or ""

    # -- the one write path ------------------------------------------------------

    def _record(
        self,
        kind: str,
        staff: str | None,
        facts: dict[str, Any],
        decide: Callable[[sqlite3.Connection], dict[str, Any]] | None = None,
        finish: Callable[[sqlite3.Connection, int, Effects, dict[str, Any]], dict[str, Any]]
        | None = None,
    ) -> dict[str, Any]:
        """Write one business fact: decide, apply, sign and append, in one transaction.

        ``decide`` reads the state under the write lock and returns more facts (or
        raises to refuse); ``finish`` builds the cashier's answer once the effects are
        known; it is stored in the entry so that a replay can give it back verbatim.
        """
        try:
            with self.store.transaction() as conn:
                if decide is not None:
                    facts = {**facts, **decide(conn)}
                if facts.get("replayed"):
                    return dict(facts["result"])
                seq, prev = self._head(conn)
                effects = apply(conn, seq + 1, kind, facts)
                result = finish(conn, seq + 1, effects, facts) if finish else {}
                body = {**facts, "effects": effects}
                if result:
                    body["result"] = result
                self._append(conn, seq + 1, prev, kind, staff, body)
                return result
        except sqlite3.Error as error:
            raise storage_error(error, self.state_dir) from None

    def _head(self, conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS_PREV) if row is None else (int(row[0]), str(row[1]))

    def _append(
        self,
        conn: sqlite3.Connection,
        seq: int,
        prev: str,
        kind: str,
        staff: str | None,
        body: dict[str, Any],
    ) -> None:
        ts = self.clock().astimezone(dt.UTC).isoformat(timespec="milliseconds")
        entry, body_bytes = sign_entry_bytes(
            self.key,
            device=self.device_id,
            seq=seq,
            ts=ts,
            kind=kind,
            staff=staff,
            body=body,
            prev=prev,
        )
        conn.execute(
            "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, kind, staff, body_bytes.decode(), prev, entry.hash, entry.sig),
        )
        self.store.set_meta(conn, "head", f"{seq}:{entry.hash}")

    # -- reading -----------------------------------------------------------------

    def today(self) -> dt.date:
        return self.clock().date()

    def resolve(self, ref: str, conn: sqlite3.Connection | None = None) -> Account:
        """A member id, a card's digits, or a QR payload (an AIM prefix is dropped)."""
        conn = conn or self.store.conn
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
            card = self._program_card(text, "member")
            # A member of another store: known from HQ's directory, earning here on
            # the card's own account until HQ joins them (sync.till_view).
            known = conn.execute(
                "SELECT member_id, state FROM hq_cards WHERE card = ?", (card,)
            ).fetchone()
            if known is not None and known[1] == "blocked":
                raise Refused("card_blocked", "member: this card was replaced and is blocked")
            return Account("C" + card, known[0] if known else None, card)
        if row[1] == "blocked":
            raise Refused("card_blocked", "member: this card was replaced and is blocked")
        member = row[0] if not str(row[0]).startswith("C") else None
        return Account(str(row[0]), member, text, row[2])

    def _dynamic_card(self, payload: str) -> str:
        """The card inside a member's rotating phone code, once its signature and time
        window check out (docs/readers.md)."""
        scan = verify_dynamic_code(
            payload, self.config.qr_secret, time.time(), self.config.cards, 0.0
        )
        if scan.kind == "member" and scan.card is not None:
            return scan.card
        code = scan.error or "invalid_code"
        raise InvalidInput(code, f"member: {scan.message or 'the phone code is not valid'}")

    def _program_card(self, text: str, field: str) -> str:
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            raise InvalidInput("invalid_card", f"{field}: not a member id or a card number")
        verdict = classify(text, self.config.cards)
        if verdict is CardClass.PAYMENT_CARD:
            # Never echo a payment card's digits: not in the message, not in a log.
            raise InvalidInput("payment_card", f"{field}: this is a bank card, not a member card")
        if verdict is CardClass.INVALID_CODE:
            raise InvalidInput("invalid_code", f"{field}: card number has a wrong check digit")
        if verdict is CardClass.FOREIGN_CARD:
            raise InvalidInput("foreign_card", f"{field}: not a card of this programme")
        return text

    def balance_of(
        self, account: str, day: dt.date, conn: sqlite3.Connection, pending: int = 0
    ) -> dict[str, int]:
        """The member's standing as this till can know it (ARCHITECTURE.md, invariant 7):
        once HQ has confirmed a balance, that balance plus this till's entries HQ had
        not yet counted; before, this till's own lots. What may be redeemed is capped by
        the rules' offline limit while HQ has not been heard from recently.

        ``pending`` is the balance change of an entry being written in the current
        transaction: already in the lots, not yet in the journal HQ's view reads."""
        figures = self._local_figures(account, day, conn)
        if has_hq_balance(conn, account):
            view = till_view(conn, account, self.device_id) + pending
            figures["balance"] = view
            figures["available"] = redeemable(
                conn,
                account,
                self.device_id,
                offline_cap=self.rules.offline_cap,
                offline_after_hours=self.rules.offline_after_hours,
                now=self.clock(),
            )
            figures["capped"] = int(figures["available"] < max(0, view))
            return figures
        age = hours_since_hq(conn, self.clock())
        if age is None or age > self.rules.offline_after_hours:
            figures["capped"] = int(figures["available"] > self.rules.offline_cap)
            figures["available"] = min(figures["available"], self.rules.offline_cap)
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

    def balance(self, ref: str) -> dict[str, Any]:
        conn, day = self.store.conn, self.today()
        account = self.resolve(ref)
        figures = self.balance_of(account.account, day, conn)
        tier = self.rules.tier_for(self.spend_12m(account.account, day, conn))
        return {
            "member_id": account.member_id,
            "card": account.card,
            "balance": figures["balance"],
            "tier": tier.name,
            "value": format_amount(self.rules.redemption_value(max(0, figures["balance"]))),
            "available": figures["available"],
            "expiring_30d": figures["expiring_30d"],
        }

    def member_card(self, ref: str) -> str:
        """The card a member shows now: the given card, or the member's active card."""
        account = self.resolve(ref)
        if account.card is not None:
            return account.card
        if account.member_id is None:
            raise Refused("no_active_card", "member: has no active card")
        return self._active_card(self.store.conn, account.member_id)

    def lookup(self, phone: str) -> dict[str, Any]:
        key = fields.phone_key(fields.phone(phone), self.config.phone_pepper)
        row = self.store.conn.execute(
            "SELECT m.member_id, m.name, c.card FROM members m LEFT JOIN cards c "
            "ON c.account = m.member_id AND c.state = 'active' WHERE m.phone_key = ? "
            "ORDER BY c.issued_at DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None:
            raise Refused("unknown_phone", "phone: no member with this phone on this till")
        return {"member_id": row[0], "name": row[1], "card": row[2]}

    def member(self, ref: str) -> dict[str, Any]:
        """What the counter shows on a scan: name, tier, balance, birthday month, and the
        HQ offers valid today that this till has not yet seen taken."""
        account = self.resolve(ref)
        figures = self.balance(ref)
        row = self.store.conn.execute(
            "SELECT name FROM members WHERE member_id = :id "
            "UNION ALL SELECT name FROM hq_members WHERE member_id = :id LIMIT 1",
            {"id": account.member_id},
        ).fetchone()
        figures["name"] = row[0] if row else None
        figures["birthday_month"] = account.birthday_month(self.today())
        figures["offers"] = till_offers.offers_for(self.store.conn, account.member_id, self.today())
        return figures

    # -- operations --------------------------------------------------------------

    def enrol(
        self,
        *,
        name: str,
        phone: str,
        birthday: str | None = None,
        gender: str | None = None,
        district: str | None = None,
        household: str | int | None = None,
        card: str | None = None,
        consent_marketing: bool = False,
        staff: str | None = None,
    ) -> dict[str, Any]:
        today = self.today()
        who = fields.staff(staff)
        number = fields.phone(phone)
        member = {
            "name": fields.name(name),
            "phone_key": fields.phone_key(number, self.config.phone_pepper),
            "phone_last4": number[-4:],
            "birthday": fields.birthday(birthday, today) if birthday is not None else None,
            "gender": fields.gender(gender) if gender is not None else None,
            "district": fields.district(district) if district is not None else None,
            "household": fields.household(household) if household is not None else None,
            "consent_marketing": 1 if consent_marketing else 0,
            "enrolled_at": self.clock().isoformat(timespec="seconds"),
            "enrolled_store": self.store_id,
            "enrolled_till": self.till_id,
            "enrolled_by": who,
        }
        physical = self._program_card(card.strip(), "card") if card is not None else None

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            existing = conn.execute(
                "SELECT member_id FROM members WHERE phone_key = ?", (member["phone_key"],)
            ).fetchone()
            if existing:
                raise Refused("duplicate_phone", f"phone: already enrolled as member {existing[0]}")
            if physical is not None:
                row = conn.execute(
                    "SELECT account FROM cards WHERE card = ?", (physical,)
                ).fetchone()
                if row and not str(row[0]).startswith("C"):
                    raise Refused("card_in_use", f"card: already belongs to member {row[0]}")
            number_of = self._next_counter(conn, "members")
            facts: dict[str, Any] = {
                "member": {**member, "member_id": f"{self.device_id}-{number_of}"},
                "card": physical or self._next_ecard(conn),
                "card_kind": "physical" if physical else "ecard",
                "day": today.isoformat(),
                "bonus": self.rules.enrol_bonus,
            }
            if self.rules.enrol_bonus:
                # The lock window is against buy-redeem-return abuse; a bonus has no receipt.
                facts["lot"] = self._lot_dates(today, locked=False)
            return facts

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            member_id = facts["member"]["member_id"]
            return {
                "member_id": member_id,
                "card": facts["card"],
                "card_kind": facts["card_kind"],
                "balance": self.balance_of(member_id, today, conn, _net(effects))["balance"],
            }

        return self._record("enrol", who, {}, decide, finish)

    def card_replace(self, ref: str, new_card: str, staff: str | None = None) -> dict[str, Any]:
        who = fields.staff(staff)
        card = self._program_card(new_card.strip(), "card")

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self.resolve(ref, conn)
            if account.member_id is None:
                raise Refused("not_enrolled", "member: enrol the card before replacing it")
            if conn.execute("SELECT 1 FROM cards WHERE card = ?", (card,)).fetchone():
                raise Refused("card_in_use", "card: this card is already issued")
            old = account.card or self._active_card(conn, account.member_id)
            return {
                "member_id": account.member_id,
                "old_card": old,
                "card": card,
                "day": self.today().isoformat(),
            }

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            return {"member_id": facts["member_id"], "card": card, "blocked": facts["old_card"]}

        return self._record("card_replace", who, {}, decide, finish)

    def earn(
        self,
        ref: str,
        receipt: str,
        *,
        amount: int | None = None,
        lines: tuple[fields.Line, ...] | None = None,
        staff: str | None = None,
    ) -> dict[str, Any]:
        receipt_id, who = fields.receipt(receipt), fields.staff(staff)
        if (amount is None) == (lines is None):
            raise InvalidInput("invalid_line", "amount: give either a total or lines, not both")
        sale = lines if lines is not None else (fields.Line("total", 1, amount or 0),)
        total = sum(line.amount for line in sale)
        if total > 10_000_000_00:
            raise InvalidInput("invalid_amount", "amount: receipt total is absurdly large")
        day = self.today()

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self.resolve(ref, conn)
            fingerprint = _fingerprint(account.account, [line.to_json() for line in sale])
            replay = self._replay(conn, "earn", receipt_id, fingerprint)
            if replay is not None:
                return {"replayed": True, "result": {**replay, "replayed": True}}
            tier = self.rules.tier_for(self.spend_12m(account.account, day, conn))
            birthday_month = account.birthday_month(day)
            priced: list[dict[str, Any]] = [
                {
                    **line.to_json(),
                    "points": self.rules.line_points(
                        line.category, line.amount, tier, day, birthday_month
                    ),
                }
                for line in sale
            ]
            points = sum(line["points"] for line in priced)
            return {
                "account": account.account,
                "member_id": account.member_id,
                "card": account.card,
                "receipt": receipt_id,
                "fingerprint": fingerprint,
                "lines": priced,
                "amount": total,
                "points": points,
                "tier": tier.name,
                "day": day.isoformat(),
                "lot": self._lot_dates(day),
            }

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            figures = self.balance_of(facts["account"], day, conn, _net(effects))
            # What the member can take at the next visit, for the POS to print.
            can_take = max(0, figures["available"])
            if can_take < self.rules.redeem_minimum:
                can_take = 0
            result = {
                "member_id": facts["member_id"],
                "receipt": receipt_id,
                "points": facts["points"],
                "balance": figures["balance"],
                "tier": facts["tier"],
                "redeemable": can_take,
                "redeemable_value": format_amount(self.rules.redemption_value(can_take)),
                "replayed": False,
            }
            self._store_result(conn, "earn", receipt_id, result)
            return result

        return self._record("earn", who, {}, decide, finish)

    def redeem(
        self,
        ref: str,
        receipt: str,
        points: str | int,
        *,
        amount: int | None = None,
        staff: str | None = None,
    ) -> dict[str, Any]:
        receipt_id, who = fields.receipt(receipt), fields.staff(staff)
        wanted = fields.points(points)
        day = self.today()

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self.resolve(ref, conn)
            fingerprint = _fingerprint(account.account, {"points": wanted, "amount": amount})
            replay = self._replay(conn, "redeem", receipt_id, fingerprint)
            if replay is not None:
                return {"replayed": True, "result": {**replay, "replayed": True}}
            if wanted < self.rules.redeem_minimum:
                raise Refused(
                    "below_minimum",
                    f"points: the smallest redemption is {self.rules.redeem_minimum} points",
                )
            figures = self.balance_of(account.account, day, conn)
            if figures["balance"] < 0:
                raise Refused(
                    "negative_balance",
                    f"points: the balance is {figures['balance']}; a refund took back "
                    "points already spent, so nothing can be redeemed until it is repaid",
                )
            if wanted > figures["available"]:
                code = "offline_cap" if figures.get("capped") else "insufficient_points"
                why = (
                    " (the offline limit: the till has not synced recently)"
                    if figures.get("capped")
                    else ""
                )
                raise Refused(
                    code, f"points: {wanted} asked, {figures['available']} available{why}"
                )
            sale_amount = amount if amount is not None else self._sale_amount(conn, receipt_id)
            value = self.rules.redemption_value(wanted)
            if sale_amount is not None and Fraction(value) > (
                self.rules.max_receipt_share * sale_amount
            ):
                limit = int(self.rules.max_receipt_share * sale_amount)
                raise Refused(
                    "over_receipt_share",
                    f"points: at most {format_amount(limit)} of this receipt can be paid "
                    "with points",
                )
            return {
                "account": account.account,
                "member_id": account.member_id,
                "receipt": receipt_id,
                "fingerprint": fingerprint,
                "points": wanted,
                "value": value,
                "amount": sale_amount,
                "day": day.isoformat(),
            }

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            result = {
                "member_id": facts["member_id"],
                "receipt": receipt_id,
                "points": wanted,
                "value": format_amount(facts["value"]),
                "balance": self.balance_of(facts["account"], day, conn, _net(effects))["balance"],
                "replayed": False,
            }
            self._store_result(conn, "redeem", receipt_id, result)
            return result

        return self._record("redeem", who, {}, decide, finish)

    def refund(
        self,
        receipt: str,
        lines: tuple[fields.Line, ...] | None = None,
        staff: str | None = None,
        *,
        supervised: bool = True,
    ) -> dict[str, Any]:
        """``supervised=False`` (a cashier without a supervisor's PIN) refuses refunds
        above the rules' ``refund.supervisor_above``."""
        receipt_id, who = fields.receipt(receipt), fields.staff(staff)
        day = self.today()

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            plan = self._plan_refund(conn, receipt_id, lines, day)
            limit = self.rules.refund_supervisor_above
            if not supervised and plan["amount"] > limit:
                raise Refused(
                    "supervisor_required",
                    f"refund of {format_amount(plan['amount'])} is over "
                    f"{format_amount(limit)}: a supervisor's PIN is needed",
                )
            return plan

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            figures = self.balance_of(facts["account"], day, conn, _net(effects))
            return {
                "member_id": facts["member_id"],
                "receipt": receipt_id,
                "points": effects["delta"],
                "taken": facts["taken"],
                "returned": facts["returned"],
                "refunded": format_amount(facts["amount"]),
                "balance": figures["balance"],
                "negative": figures["balance"] < 0,
            }

        return self._record("refund", who, {}, decide, finish)

    def adjust(self, ref: str, points: str | int, reason: str, staff: str) -> dict[str, Any]:
        """A manual correction with a reason and a staff id (supervisor's action)."""
        who, change = fields.staff(staff), fields.signed_points(points)
        if who is None:
            raise InvalidInput("invalid_staff", "staff: a manual adjustment needs a staff id")
        why = reason.strip()
        if not why or len(why) > 200:
            raise InvalidInput("invalid_reason", "reason: 1 to 200 characters")
        day = self.today()

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self.resolve(ref, conn)
            figures = self.balance_of(account.account, day, conn)
            if change < 0 and -change > max(0, figures["balance"]):
                raise Refused(
                    "insufficient_points", f"points: the balance is only {figures['balance']}"
                )
            return {
                "account": account.account,
                "member_id": account.member_id,
                "points": change,
                "reason": why,
                "day": day.isoformat(),
                "lot": self._lot_dates(day, locked=False),
            }

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            return {
                "member_id": facts["member_id"],
                "points": change,
                "balance": self.balance_of(facts["account"], day, conn, _net(effects))["balance"],
            }

        return self._record("adjust", who, {}, decide, finish)

    def take_offer(
        self, ref: str, offer: str, receipt: str, staff: str | None = None
    ) -> dict[str, Any]:
        """Take an HQ offer at the counter, at most once per till (``offer_taken``).

        A voucher or a gift is recorded with its value and changes no points. A points
        multiplier ``m`` credits ``(m - 1)`` times the points of the receipt's earn on
        this till (``offer_needs_earn`` if there is none yet)."""
        offer_id, receipt_id, who = _offer_id(offer), fields.receipt(receipt), fields.staff(staff)
        day = self.today()

        def decide(conn: sqlite3.Connection) -> dict[str, Any]:
            account = self.resolve(ref, conn)
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
            facts: dict[str, Any] = {
                "account": account.account,
                "member_id": account.member_id,
                "offer_id": offer_id,
                "campaign": held["campaign"],
                "offer_kind": held["kind"],
                "offer_value": held["value"],
                "title": held["title"],
                "receipt": receipt_id,
                "points": points,
                "value": money,
                "day": day.isoformat(),
            }
            if points:
                facts["lot"] = self._lot_dates(day)
            return facts

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, facts: dict[str, Any]
        ) -> dict[str, Any]:
            return {
                "member_id": facts["member_id"],
                "offer_id": offer_id,
                "receipt": receipt_id,
                "kind": facts["offer_kind"],
                "title": facts["title"],
                "points": facts["points"],
                "value": format_amount(facts["value"]),
                "balance": self.balance_of(facts["account"], day, conn, _net(effects))["balance"],
            }

        return self._record("offer_take", who, {}, decide, finish)

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

    # -- helpers -----------------------------------------------------------------

    def _plan_refund(
        self,
        conn: sqlite3.Connection,
        receipt_id: str,
        lines: tuple[fields.Line, ...] | None,
        day: dt.date,
    ) -> dict[str, Any]:
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
        planned: list[dict[str, int]] = []
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
            already = sum(p["amount"] for p in planned if p["line_no"] == slot[0])
            before = slot[6] + already
            after = before + line.amount
            # Cumulative rounding: all partial refunds of a line add up to its points.
            taken = slot[4] * after // slot[3] - slot[4] * before // slot[3]
            planned.append(
                {"line_no": slot[0], "qty": line.qty, "amount": line.amount, "points": taken}
            )
        amount = sum(p["amount"] for p in planned)
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
        plan: dict[str, Any] = {
            "account": account,
            "member_id": member,
            "receipt": receipt_id,
            "lines": planned,
            "amount": amount,
            "taken": sum(p["points"] for p in planned) + bonus_taken,
            "returned": returned,
            "day": day.isoformat(),
        }
        if bonus_taken:
            plan["bonus_taken"] = bonus_taken
        return plan

    def _lot_dates(self, day: dt.date, locked: bool = True) -> dict[str, str]:
        spendable = self.rules.spendable_on(day) if locked else day
        return {
            "spendable_on": spendable.isoformat(),
            "expires_on": self.rules.expires_on(day).isoformat(),
        }

    def _replay(
        self, conn: sqlite3.Connection, op: str, receipt: str, fingerprint: str
    ) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT fingerprint, result FROM receipts WHERE op = ? AND receipt = ?",
            (op, receipt),
        ).fetchone()
        if row is None:
            return None
        if row[0] != fingerprint:
            raise Refused(
                "receipt_conflict",
                f"receipt: {receipt} was already recorded with different content",
            )
        result: dict[str, Any] = json.loads(row[1])
        return result

    def _store_result(
        self, conn: sqlite3.Connection, op: str, receipt: str, result: dict[str, Any]
    ) -> None:
        conn.execute(
            "UPDATE receipts SET result = ? WHERE op = ? AND receipt = ?",
            (result_text(result), op, receipt),
        )

    def _sale_amount(self, conn: sqlite3.Connection, receipt: str) -> int | None:
        row = conn.execute(
            "SELECT amount FROM receipts WHERE op = 'earn' AND receipt = ?", (receipt,)
        ).fetchone()
        return None if row is None else int(row[0])

    def _active_card(self, conn: sqlite3.Connection, member_id: str) -> str:
        row = conn.execute(
            "SELECT card FROM cards WHERE account = ? AND state = 'active' "
            "ORDER BY issued_at DESC LIMIT 1",
            (member_id,),
        ).fetchone()
        if row is None:
            raise Refused("no_active_card", "member: has no active card to replace")
        return str(row[0])

    def _next_counter(self, conn: sqlite3.Connection, name: str) -> int:
        key = f"counter:{name}"
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        number = int(row[0]) + 1 if row else 1
        self.store.set_meta(conn, key, str(number))
        return number

    def _next_ecard(self, conn: sqlite3.Connection) -> str:
        """An e-card number from this till's block: prefix, a 5-digit block, a counter
        and the Luhn digit. HQ assigns the block at registration (unique across the
        chain); before that the block is derived from the device id, in the upper half
        (50000-99999) that HQ never assigns."""
        policy = self.config.cards
        prefix = policy.prefixes[0]
        counter_digits = policy.length - len(prefix) - 1 - 5
        assigned = self.store.meta("ecard_block")
        number_of_block = int(assigned) if assigned else 50_000 + int(self.device_id, 16) % 50_000
        block = f"{number_of_block:05d}"
        while True:
            number = self._next_counter(conn, "ecards")
            if number >= 10**counter_digits:
                raise Refused("ecards_exhausted", "card: this till's e-card block is used up")
            body = f"{prefix}{block}{number:0{counter_digits}d}"
            card = body + luhn_digit(body)
            if not conn.execute("SELECT 1 FROM cards WHERE card = ?", (card,)).fetchone():
                return card

    # -- the journal -------------------------------------------------------------

    _ENTRY_COLUMNS = "SELECT seq, ts, kind, staff, body, prev_hash, hash, sig FROM journal"

    def entries(self, conn: sqlite3.Connection | None = None) -> Iterator[Entry]:
        conn = conn or self.store.conn
        for row in conn.execute(f"{self._ENTRY_COLUMNS} ORDER BY seq"):
            yield self._entry(row)

    def entry_at(self, seq: int) -> Entry | None:
        row = self.store.conn.execute(f"{self._ENTRY_COLUMNS} WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else self._entry(row)

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        return Entry(
            device=self.device_id,
            seq=row[0],
            ts=row[1],
            kind=row[2],
            staff=row[3],
            body=json.loads(row[4]),
            prev=row[5],
            hash=row[6],
            sig=row[7],
        )

    def head(self) -> tuple[int, str]:
        return self._head(self.store.conn)


def _offer_id(value: object) -> str:
    if not isinstance(value, str) or not till_offers.OFFER_ID.fullmatch(value):
        raise InvalidInput(
            "invalid_offer", "offer: 1 to 64 characters of letters, digits and . _ -"
        )
    return value


def _net(effects: Effects) -> int:
    return effects["delta"] - effects["expired"]


def _fingerprint(account: str, content: object) -> str:
    return hashlib.sha256(canonical({"account": account, "content": content})).hexdigest()
