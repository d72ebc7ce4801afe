"""The till's ledger: members, cards and points, one journal entry per fact.

Every operation follows the same shape: validate the input (``agent.fields``),
then in one ``BEGIN IMMEDIATE`` transaction read the state it needs, decide by the
rules, apply the entry to the projection (``agent.projection``), sign and append
the journal entry, and commit. If anything fails, nothing is written.

``Ledger`` is composed of collaborators, one module per concern, that share one
``agent.ledger_context.LedgerContext`` (store, rules, config, secrets, device id,
clock). This module holds set-up, the one write path (``_record``, handed to the
writers as a callable), enrolment, card replacement, earn, redeem and manual
adjustments, and reading the journal back. Beside it:

- ``reads`` (``agent.ledger_reads``): resolving a member id, card or QR payload to
  an ``Account``, and a member's standing (``balance_of``, ``balance``, ``member``);
- ``refunds`` (``agent.ledger_refunds``): refunds and their plan against the sale;
- ``offers`` (``agent.ledger_offers``): taking HQ's offers at the counter;
- ``numbers`` (``agent.ledger_numbers``): member ids and e-card numbers.

``Ledger`` answers the public calls of the command line, the local API and the
daemon itself, passing them on to the collaborator that owns them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import fields, privacy, till_secrets
from agent.chain import Entry, canonical
from agent.checkpointer import Checkpointer
from agent.config import Config
from agent.entries import (
    Adjust,
    Body,
    CardReplace,
    Consent,
    Earn,
    Enrol,
    Init,
    Kind,
    Member,
    Redeem,
    SaleLine,
)
from agent.errors import InvalidInput, LedgerError, Refused, TillRestored
from agent.keys import device_id_for, public_key_text, read_private_key, write_private_key
from agent.ledger_cache import StateCache, restored_mark
from agent.ledger_context import B, Clock, Decide, Finish, LedgerContext, R, local_now
from agent.ledger_numbers import LedgerNumbers
from agent.ledger_offers import LedgerOffers
from agent.ledger_reads import Account as Account  # re-exported: callers import it from here
from agent.ledger_reads import LedgerReads, net
from agent.ledger_refunds import LedgerRefunds
from agent.ledger_suggestions import LedgerSuggestions
from agent.money import format_amount
from agent.privacy_tables import is_erased, keep_key
from agent.projection import Effects, apply_typed, result_text
from agent.results import (
    Adjusted,
    CardReplaced,
    ConsentRecorded,
    Earned,
    Enrolled,
    Found,
    MemberView,
    OfferTaken,
    Redeemed,
    Refunded,
    Standing,
    StoreSuggestions,
    SuggestionRecorded,
    TillIdentity,
)
from agent.rules import Rules, default_rules_text, load_rules_text
from agent.store import DEFAULT_CHECKPOINT_PAGES, Store, storage_error
from agent.till_secrets import SECRETS_FILE, TillSecrets

DB_FILE, KEY_FILE, RULES_FILE = "ledger.db", "device.key", "rules.toml"


def restored_refusal(conn: sqlite3.Connection) -> LedgerError | None:
    """The refusal of every write once ``sync`` found this till restored or cloned."""
    found = restored_mark(conn)
    return None if found is None else _restored(found)


def _restored(found: str) -> LedgerError:
    return TillRestored(
        "till_restored_from_backup",
        f"`tillpoints sync` found this till restored from a backup or cloned ({found}): "
        "HQ holds another history for its device, so nothing recorded here could ever be "
        "uploaded. Nothing can be recorded; reads still work. Recover by moving the state "
        "directory aside, `tillpoints init` and `register` with a fresh token "
        '(docs/sync.md, "A till restored from backup")',
        {"found": found},
    )


class Ledger:
    # The collaborators (``_assemble``), sharing ``context``.
    context: LedgerContext
    reads: LedgerReads
    numbers: LedgerNumbers
    offers: LedgerOffers
    refunds: LedgerRefunds
    suggestions: LedgerSuggestions

    def __init__(
        self, state_dir: Path, config: Config | None = None, clock: Clock = local_now
    ) -> None:
        self.state_dir, self.config, self.clock = state_dir, config or Config(), clock
        self.store = Store(state_dir / DB_FILE)
        self.secrets = TillSecrets(state_dir)
        try:
            self.key = read_private_key(state_dir / KEY_FILE)
            rules_text = (state_dir / RULES_FILE).read_text("utf-8")
        except (OSError, ValueError) as error:
            self.store.close()
            raise LedgerError(
                "broken_state", f"state in {state_dir} is incomplete: {error}"
            ) from None
        self.rules: Rules = load_rules_text(rules_text, str(state_dir / RULES_FILE))
        # Set when the journal failed its check (``agent.daemon.check_journal``):
        # every write is refused with it, reads still work (so is every write of a
        # till found restored or cloned: ``refusal``).
        self.write_refusal: LedgerError | None = None
        self.device_id = self.store.meta("device_id") or ""
        self.store_id = self.store.meta("store") or ""
        self.till_id = self.store.meta("till") or ""
        # Every read and write of the journal table (agent.journal).
        self.journal = self.store.journal(self.device_id)
        self.checkpointer: Checkpointer | None = None
        self._assemble()

    def _assemble(self) -> None:
        self.context = LedgerContext(
            self.state_dir,
            self.store,
            self.config,
            self.secrets,
            self.rules,
            self.device_id,
            self.clock,
            StateCache(),
        )
        self.reads = LedgerReads(self.context)
        self.numbers = LedgerNumbers(self.context)
        self.offers = LedgerOffers(self.context, self.reads, self._record)
        self.refunds = LedgerRefunds(self.context, self.reads, self._record)
        self.suggestions = LedgerSuggestions(self.context, self.reads, self._record)

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
        phone_cost: int = fields.PHONE_COST,
        schema: Path | None = None,
        durable: bool = True,
    ) -> Ledger:
        """Create the state directory (0700), the device key and the secrets file
        (0600, ``agent.till_secrets``), the ledger and its first journal entry, which
        names the device and its public key. ``schema``: an empty migrated ledger
        (``Store.make_schema``) copied instead of migrating a new file, for a
        simulated chain's many tills; a till's own init migrates its file.
        ``durable=False``: the ledger's commits skip their fsyncs from the start
        (``Store.skip_fsync``), for a simulated till only, which is thrown away."""
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
            (state_dir / SECRETS_FILE).unlink(missing_ok=True)
            till_secrets.create(state_dir, phone_cost)
            (state_dir / RULES_FILE).write_text(text, "utf-8")
            if schema is not None:
                Store.copy_schema(schema, state_dir / DB_FILE)
            created = Store(state_dir / DB_FILE, create=True)
            if not durable:
                created.skip_fsync()
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
        if not durable:
            ledger.store.skip_fsync()
        genesis = Init(
            store=store, till=till, device_id=device_id, public_key=public_key_text(public)
        )
        ledger._record(Kind.INIT, None, lambda conn: genesis, _no_answer)
        return ledger

    def identity(self) -> TillIdentity:
        """Who this till is: what ``init`` answers."""
        return TillIdentity(
            store=self.store_id,
            till=self.till_id,
            device_id=self.device_id,
            public_key=self.public_key,
            state=str(self.state_dir),
        )

    def close(self) -> None:
        self.stop_checkpointer()
        self.store.close()

    def start_checkpointer(self) -> Checkpointer:
        """Checkpoint the WAL on a thread of its own from now on, off the commits'
        path (``agent.checkpointer``): the agent's ledger, which takes the earns."""
        if self.checkpointer is None:
            self.checkpointer = Checkpointer(self.state_dir / DB_FILE)
            self.checkpointer.start()
            self.store.hand_over_checkpoints()
            self.store.after_commit(self.checkpointer.noted)
        return self.checkpointer

    def stop_checkpointer(self) -> None:
        """Commits checkpoint themselves again (SQLite's default), the thread ends."""
        if self.checkpointer is not None:
            self.store.after_commit(None)
            self.store.hand_over_checkpoints(DEFAULT_CHECKPOINT_PAGES)
            self.checkpointer.stop()
            self.checkpointer = None

    def refusal(self) -> LedgerError | None:
        """Why every write is refused now, if it is: the journal failed its check, or
        ``sync`` found this till restored from a backup or cloned."""
        return self.write_refusal or restored_refusal(self.store.conn)

    @property
    def public_key(self) -> str:
        return self.store.meta("public_key") or ""

    # -- the one write path ------------------------------------------------------

    def _record(
        self, kind: Kind, staff: str | None, decide: Decide[B, R], finish: Finish[B, R]
    ) -> R:
        """Write one business fact: decide, apply, sign and append, in one transaction.

        ``decide`` reads the state under the write lock and returns the entry's typed
        body (or raises to refuse, or returns the answer already given: a replay,
        nothing written); the body is applied and handed to ``finish`` as built, and
        encoded once, for the journal (issue 18: not read back from its JSON).
        ``finish`` builds the cashier's answer (``agent.results``) once the effects
        are known; its JSON is stored in the entry so that a replay can give it back
        verbatim.
        """
        if self.write_refusal is not None:
            refusal = self.write_refusal
            raise type(refusal)(refusal.code, refusal.message, dict(refusal.details))
        # What the write reads that only another writer changes is kept between
        # writes, dropped when the file changed otherwise (agent.ledger_cache).
        cache, appended = self.context.cache, None
        try:
            with self.store.transaction() as conn:
                cache.begin(conn)
                try:
                    # Under the write lock: `sync` (another process) may have just found it.
                    found = cache.restored(conn)
                    if found is not None:
                        raise _restored(found)
                    typed = decide(conn)
                    if not isinstance(typed, Body):
                        return typed  # a replay
                    head = cache.head or self._head(conn)
                    effects = apply_typed(conn, head[0] + 1, typed)
                    result = finish(conn, head[0] + 1, effects, typed)
                    body = {**typed.to_body(), "effects": effects}
                    if result is not None:
                        body["result"] = answer = result.as_json()
                        if isinstance(typed, Earn | Redeem):  # kept for a replay
                            self._store_result(conn, kind, typed.receipt, answer)
                    entry = self.journal.append(
                        conn, self.key, head, kind, staff, body, self.clock()
                    )
                    appended = (entry.seq, entry.hash)
                finally:
                    cache.end()
            cache.committed(self.store.conn, appended)
            return result
        except sqlite3.Error as error:
            raise storage_error(error, self.state_dir) from None

    def _head(self, conn: sqlite3.Connection) -> tuple[int, str]:
        return self.journal.head(conn)

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
    ) -> Enrolled:
        today = self.context.today()
        who = fields.staff(staff)
        number = fields.phone(phone)
        physical = self.reads.program_card(card.strip(), "card") if card is not None else None
        # Only the current pepper's key is stored (no digits of the number: no
        # ``phone_last4`` since issue 12); earlier peppers' keys find a member enrolled
        # before this till registered (agent.till_secrets).
        keys = [fields.phone_key(number, pepper) for pepper in self.secrets.phone()]
        member = Member(
            member_id="",  # numbered under the write lock
            name=fields.name(name),
            phone_key=keys[0],
            birthday=fields.birthday(birthday, today) if birthday is not None else None,
            gender=fields.gender(gender) if gender is not None else None,
            district=fields.district(district) if district is not None else None,
            household=fields.household(household) if household is not None else None,
            consent_marketing=1 if consent_marketing else 0,
            enrolled_at=self.clock().isoformat(timespec="seconds"),
            enrolled_store=self.store_id,
            enrolled_till=self.till_id,
            enrolled_by=who,
        )

        def decide(conn: sqlite3.Connection) -> Enrol | Enrolled:
            existing = conn.execute(
                "SELECT member_id FROM members WHERE phone_key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys),),
            ).fetchone()
            if existing:
                raise Refused("duplicate_phone", f"phone: already enrolled as member {existing[0]}")
            if physical is not None:
                row = conn.execute(
                    "SELECT account FROM cards WHERE card = ?", (physical,)
                ).fetchone()
                if row and not str(row[0]).startswith("C"):
                    raise Refused("card_in_use", f"card: already belongs to member {row[0]}")
            number_of = self.numbers.next_counter(conn, "members")
            numbered = dataclasses.replace(member, member_id=f"{self.device_id}-{number_of}")
            # The personal fields go into the journal sealed under the member's own
            # key, kept beside it (agent.privacy, docs/decisions/0007).
            key = privacy.new_key()
            keep_key(conn, numbered.member_id, key, numbered.enrolled_at)
            return Enrol(
                member=privacy.seal(numbered, key),
                card=physical or self.numbers.next_ecard(conn),
                card_kind="physical" if physical else "ecard",
                day=today.isoformat(),
                bonus=self.rules.enrol_bonus,
                # The lock window is against buy-redeem-return abuse; a bonus has no receipt.
                lot=self.context.lot_dates(today, locked=False) if self.rules.enrol_bonus else None,
            )

        def finish(conn: sqlite3.Connection, seq: int, effects: Effects, body: Enrol) -> Enrolled:
            member_id = body.member.member_id
            return Enrolled(
                member_id=member_id,
                card=body.card,
                card_kind=body.card_kind,
                balance=self.reads.balance_of(member_id, today, conn, net(effects))["balance"],
            )

        return self._record(Kind.ENROL, who, decide, finish)

    def consent(self, ref: str, marketing: bool, staff: str | None = None) -> ConsentRecorded:
        """A member gives (``marketing``) or withdraws marketing consent at the counter:
        a ``consent`` entry; HQ takes the member off its lists from the latest one on."""
        who = fields.staff(staff)

        def decide(conn: sqlite3.Connection) -> Consent | ConsentRecorded:
            account = self.reads.resolve(ref, conn)
            if account.member_id is None:
                raise Refused("not_enrolled", "member: enrol the card before recording consent")
            if is_erased(conn, account.member_id):
                raise Refused("member_erased", "member: this member's data was erased")
            return Consent(
                member_id=account.member_id,
                marketing=1 if marketing else 0,
                day=self.context.today().isoformat(),
            )

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, body: Consent
        ) -> ConsentRecorded:
            return ConsentRecorded(member_id=body.member_id, marketing=bool(body.marketing))

        return self._record(Kind.CONSENT, who, decide, finish)

    def card_replace(self, ref: str, new_card: str, staff: str | None = None) -> CardReplaced:
        who = fields.staff(staff)
        card = self.reads.program_card(new_card.strip(), "card")

        def decide(conn: sqlite3.Connection) -> CardReplace | CardReplaced:
            account = self.reads.resolve(ref, conn)
            if account.member_id is None:
                raise Refused("not_enrolled", "member: enrol the card before replacing it")
            if conn.execute("SELECT 1 FROM cards WHERE card = ?", (card,)).fetchone():
                raise Refused("card_in_use", "card: this card is already issued")
            old = account.card or self.reads.active_card(conn, account.member_id)
            return CardReplace(
                member_id=account.member_id,
                old_card=old,
                card=card,
                day=self.context.today().isoformat(),
            )

        def finish(
            conn: sqlite3.Connection, seq: int, effects: Effects, body: CardReplace
        ) -> CardReplaced:
            return CardReplaced(member_id=body.member_id, card=card, blocked=body.old_card)

        return self._record(Kind.CARD_REPLACE, who, decide, finish)

    def earn(
        self,
        ref: str,
        receipt: str,
        *,
        amount: int | None = None,
        lines: tuple[fields.Line, ...] | None = None,
        staff: str | None = None,
    ) -> Earned:
        receipt_id, who = fields.receipt(receipt), fields.staff(staff)
        if (amount is None) == (lines is None):
            raise InvalidInput("invalid_line", "amount: give either a total or lines, not both")
        sale = lines if lines is not None else (fields.Line("total", 1, amount or 0),)
        total = sum(line.amount for line in sale)
        if total > 10_000_000_00:
            raise InvalidInput("invalid_amount", "amount: receipt total is absurdly large")
        day = self.context.today()

        def decide(conn: sqlite3.Connection) -> Earn | Earned:
            account = self.reads.resolve(ref, conn)
            fingerprint = _fingerprint(account.account, [line.to_json() for line in sale])
            replay = self._replay(conn, Kind.EARN, receipt_id, fingerprint)
            if replay is not None:
                return Earned.from_json({**replay, "replayed": True})
            tier = self.rules.tier_for(self.reads.spend_12m(account.account, day, conn))
            birthday_month = account.birthday_month(day)
            priced = tuple(
                SaleLine(
                    category=line.category,
                    qty=line.qty,
                    amount=line.amount,
                    points=self.rules.line_points(
                        line.category, line.amount, tier, day, birthday_month
                    ),
                )
                for line in sale
            )
            return Earn(
                account=account.account,
                member_id=account.member_id,
                card=account.card,
                receipt=receipt_id,
                fingerprint=fingerprint,
                lines=priced,
                amount=total,
                points=sum(line.points for line in priced),
                tier=tier.name,
                day=day.isoformat(),
                lot=self.context.lot_dates(day),
            )

        def finish(conn: sqlite3.Connection, seq: int, effects: Effects, body: Earn) -> Earned:
            figures = self.reads.balance_of(body.account, day, conn, net(effects))
            # What the member can take at the next visit, for the POS to print.
            can_take = max(0, figures["available"])
            if can_take < self.rules.redeem_minimum:
                can_take = 0
            result = Earned(
                member_id=body.member_id,
                receipt=receipt_id,
                points=body.points,
                balance=figures["balance"],
                tier=body.tier,
                redeemable=can_take,
                redeemable_value=self.rules.redemption_value(can_take),
                replayed=False,
            )
            return result

        return self._record(Kind.EARN, who, decide, finish)

    def redeem(
        self,
        ref: str,
        receipt: str,
        points: str | int,
        *,
        amount: int | None = None,
        staff: str | None = None,
    ) -> Redeemed:
        receipt_id, who = fields.receipt(receipt), fields.staff(staff)
        wanted = fields.points(points)
        day = self.context.today()

        def decide(conn: sqlite3.Connection) -> Redeem | Redeemed:
            account = self.reads.resolve(ref, conn)
            fingerprint = _fingerprint(account.account, {"points": wanted, "amount": amount})
            replay = self._replay(conn, Kind.REDEEM, receipt_id, fingerprint)
            if replay is not None:
                return Redeemed.from_json({**replay, "replayed": True})
            if wanted < self.rules.redeem_minimum:
                raise Refused(
                    "below_minimum",
                    f"points: the smallest redemption is {self.rules.redeem_minimum} points",
                )
            figures = self.reads.balance_of(account.account, day, conn)
            if figures["balance"] < 0:
                raise Refused(
                    "negative_balance",
                    f"points: the balance is {figures['balance']}; a refund took back "
                    "points already spent, so nothing can be redeemed until it is repaid",
                )
            if wanted > figures["available"]:
                code = "offline_cap" if figures.get("capped") else "insufficient_points"
                why = ""
                if figures.get("capped") and figures.get("stale"):
                    why = (
                        " (the offline limit: the till has not synced in the last "
                        f"{self.rules.offline_after_hours} hours)"
                    )
                elif figures.get("capped"):
                    why = (
                        f" (at most {self.rules.offline_cap} points of the balance HQ "
                        "confirmed at this till between two syncs; more after the next sync)"
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
            return Redeem(
                account=account.account,
                member_id=account.member_id,
                receipt=receipt_id,
                fingerprint=fingerprint,
                points=wanted,
                value=value,
                amount=sale_amount,
                day=day.isoformat(),
            )

        def finish(conn: sqlite3.Connection, seq: int, effects: Effects, body: Redeem) -> Redeemed:
            result = Redeemed(
                member_id=body.member_id,
                receipt=receipt_id,
                points=wanted,
                value=body.value,
                balance=self.reads.balance_of(body.account, day, conn, net(effects))["balance"],
                replayed=False,
            )
            return result

        return self._record(Kind.REDEEM, who, decide, finish)

    def adjust(self, ref: str, points: str | int, reason: str, staff: str) -> Adjusted:
        """A manual correction with a reason and a staff id (supervisor's action)."""
        who, change = fields.staff(staff), fields.signed_points(points)
        if who is None:
            raise InvalidInput("invalid_staff", "staff: a manual adjustment needs a staff id")
        why = fields.reason(reason)
        day = self.context.today()

        def decide(conn: sqlite3.Connection) -> Adjust | Adjusted:
            account = self.reads.resolve(ref, conn)
            figures = self.reads.balance_of(account.account, day, conn)
            if change < 0 and -change > max(0, figures["balance"]):
                raise Refused(
                    "insufficient_points", f"points: the balance is only {figures['balance']}"
                )
            return Adjust(
                account=account.account,
                member_id=account.member_id,
                points=change,
                reason=why,
                day=day.isoformat(),
                lot=self.context.lot_dates(day, locked=False),
            )

        def finish(conn: sqlite3.Connection, seq: int, effects: Effects, body: Adjust) -> Adjusted:
            return Adjusted(
                member_id=body.member_id,
                points=change,
                balance=self.reads.balance_of(body.account, day, conn, net(effects))["balance"],
            )

        return self._record(Kind.ADJUST, who, decide, finish)

    # -- what the collaborators answer ---------------------------------------------

    def refund(
        self,
        receipt: str,
        lines: tuple[fields.Line, ...] | None = None,
        staff: str | None = None,
        *,
        supervised: bool = True,
    ) -> Refunded:
        return self.refunds.refund(receipt, lines, staff, supervised=supervised)

    def take_offer(
        self, ref: str, offer: str, receipt: str, staff: str | None = None
    ) -> OfferTaken:
        return self.offers.take_offer(ref, offer, receipt, staff)

    def record_suggestion(
        self, ref: str, suggestion: str, outcome: str, staff: str | None = None
    ) -> SuggestionRecorded:
        return self.suggestions.record_answer(ref, suggestion, outcome, staff)

    def store_suggestions(self, store: str | None = None) -> StoreSuggestions:
        """Today's suggestions for the members of ``store`` (default: this till's)."""
        return self.suggestions.store_list(self.store_id if store is None else store)

    def resolve(self, ref: str) -> Account:
        return self.reads.resolve(ref)

    def balance(self, ref: str) -> Standing:
        return self.reads.balance(ref)

    def member(self, ref: str) -> MemberView:
        return self.reads.member(ref)

    def member_card(self, ref: str) -> str:
        return self.reads.member_card(ref)

    def lookup(self, phone: str, *, ask_hq: Callable[[str], Found | None] | None = None) -> Found:
        return self.reads.lookup(phone, ask_hq=ask_hq)

    # -- helpers -----------------------------------------------------------------

    def _replay(
        self, conn: sqlite3.Connection, op: Kind, receipt: str, fingerprint: str
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
        self, conn: sqlite3.Connection, op: Kind, receipt: str, answer: dict[str, Any]
    ) -> None:
        """The answer kept beside the receipt, for a replay to give back verbatim
        (encoded once: the journal's ``result`` is the same dict)."""
        conn.execute(
            "UPDATE receipts SET result = ? WHERE op = ? AND receipt = ?",
            (result_text(answer), op, receipt),
        )

    def _sale_amount(self, conn: sqlite3.Connection, receipt: str) -> int | None:
        row = conn.execute(
            "SELECT amount FROM receipts WHERE op = 'earn' AND receipt = ?", (receipt,)
        ).fetchone()
        return None if row is None else int(row[0])

    # -- the journal -------------------------------------------------------------

    def entries(self, conn: sqlite3.Connection | None = None) -> Iterator[Entry]:
        return self.journal.read_from(1, conn=conn)

    def entry_at(self, seq: int) -> Entry | None:
        return self.journal.entry_at(seq)

    def head(self) -> tuple[int, str]:
        return self.journal.head()


def _no_answer(conn: sqlite3.Connection, seq: int, effects: Effects, body: Init) -> None:
    """The genesis entry's answer: none (``init`` answers with ``Ledger.identity``)."""
    return None


def _fingerprint(account: str, content: object) -> str:
    return hashlib.sha256(
        canonical({"account": account, "content": content}, checked=True)
    ).hexdigest()
