"""Member privacy at HQ (issue 17): erase, export, consent and retention.

- ``erase``: destroys the member's key (``hq_member_keys``: the sealed enrolment in
  the stored journal can never be opened again), the personal fields HQ projected
  (the entry's phone key column, insight's ``ins_members`` birthday, gender and
  household), records who, when and why in ``hq_audit`` in the same transaction, and
  numbers an erase instruction from ``batch_clock`` (``hq_erasures``) so that every
  till's next download carries it (``sync.hq.directory``). Points, visits and
  balances stay, under the pseudonymous member id. Then the files are compacted
  (``HQStore.compact``: the WAL checkpointed on SQLite, the tables vacuumed on
  PostgreSQL; SQLite's ``secure_delete`` is on for HQ's connections).
- ``export``: everything HQ holds about one member, as JSON.
- ``consent``: HQ's own marketing-consent decision (``hq_consents``), audited;
  ``ins_members.consent`` follows the latest word, HQ's or a till's, which is what
  call-back lists, birthdays and suggestions select on.
- ``retention``: erases lapsed members the same way (a dry run writes nothing).

A clear-text enrolment (a till before issue 17) is erased from every projection but
its signed body cannot change: docs/privacy.md says what an operator does then.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from agent.entries import Consent, Enrol, Kind, readable
from sync.errors import invalid, refused
from sync.hq.console.actions import reason_text
from sync.hq.console.audit_log import record
from sync.hq.db import HQStore, Tx, next_batch_no
from sync.hq.extract import counter_member
from sync.hq.insight.facts import ensure_tables, refresh
from sync.hq.insight.operators import Operator
from sync.hq.member_keys import member_key, opened
from sync.hq.projection import member_balance
from sync.protocol import utc_text

_MEMBER = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)
# What an erasure touches, compacted afterwards.
ERASED_TABLES = ("hq_member_keys", "entries", "ins_members", "hq_consents")
# The retention period when neither --lapsed-days nor hq_meta says otherwise.
DEFAULT_RETENTION_DAYS = 3 * 365
RETENTION_KEY = "privacy_retention_days"


def cli_operator(name: str, now: dt.datetime) -> Operator:
    """Who acts from HQ's command line: an admin (whoever holds the database URL)."""
    return Operator(name=name, expires_at=now, token_expires_at=now, role="admin")


def member_ref(value: str | None) -> str:
    text = (value or "").strip()
    if not _MEMBER.fullmatch(text):
        raise invalid("invalid_member", "member: a member id (1 to 128 letters, digits, -_.:)")
    return text


def _enrolment(tx: Tx, member: str) -> Enrol | None:
    row = tx.one(
        "SELECT body FROM entries WHERE kind = 'enrol' AND member_id = ? ORDER BY ts LIMIT 1",
        (member,),
    )
    body = readable(Kind.ENROL, json.loads(str(row[0]))) if row else None
    return body if isinstance(body, Enrol) else None


def _erase(tx: Tx, who: Operator, member: str, why: str, now: dt.datetime) -> dict[str, Any]:
    enrol = _enrolment(tx, member)
    if enrol is None:
        raise refused("unknown_member", f"member {member}: HQ holds no enrolment", http_status=404)
    if tx.locked("SELECT erased_at FROM hq_erasures WHERE member_id = ?", (member,)):
        raise refused("already_erased", f"member {member}: already erased", http_status=409)
    tx.run("DELETE FROM hq_member_keys WHERE member_id = ?", (member,))
    tx.run("UPDATE entries SET phone_key = NULL WHERE member_id = ?", (member,))
    tx.run(
        "UPDATE ins_members SET birth_year = NULL, birthday = NULL, gender = NULL, "
        "household = NULL, consent = 0 WHERE member_id = ?",
        (member,),
    )
    tx.run("DELETE FROM hq_consents WHERE member_id = ?", (member,))
    clear = enrol.member.sealed is None
    record(tx, who, "erase_member", member, why, now, {"clear_text_enrolment": clear})
    # Numbered last, like a batch (sync.hq.ingest): the download carries it in order.
    batch_no = next_batch_no(tx)
    tx.run(
        "INSERT INTO hq_erasures (member_id, batch_no, erased_at, operator, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        (member, batch_no, utc_text(now), who.name, why),
    )
    return {"member_id": member, "erased": True, "clear_text_enrolment": clear}


def erase(
    store: HQStore, who: Operator, member: str | None, reason: str | None, now: dt.datetime
) -> dict[str, Any]:
    ref, why = member_ref(member), reason_text(reason)
    ensure_tables(store)
    with store.write() as tx:
        answer = _erase(tx, who, ref, why, now)
    store.compact(ERASED_TABLES)
    return answer


def _erasure(tx: Tx, member: str) -> dict[str, Any] | None:
    row = tx.one(
        "SELECT erased_at, operator, reason FROM hq_erasures WHERE member_id = ?", (member,)
    )
    return None if row is None else {"at": str(row[0]), "by": str(row[1]), "reason": str(row[2])}


def export(store: HQStore, member: str | None, now: dt.datetime) -> dict[str, Any]:
    """Everything HQ holds about ``member``: the personal fields (none once erased),
    consent, balance, cards and every entry of the member's accounts at every store."""
    from sync.hq.console.members import every_visit, member_cards

    ref = member_ref(member)
    refresh(store)
    with store.read() as tx:
        enrol = _enrolment(tx, ref)
        if enrol is None:
            raise refused("unknown_member", f"member {ref}: HQ holds no enrolment", http_status=404)
        person = opened(tx, enrol.member)
        consent = tx.one("SELECT consent FROM ins_members WHERE member_id = ?", (ref,))
        answer = {
            "member_id": ref,
            "name": person.name,
            "phone_key": person.phone_key,
            "birthday": person.birthday,
            "gender": person.gender,
            "district": person.district,
            "household": person.household,
            "consent_marketing": bool(consent[0]) if consent else False,
            "enrolled_at": person.enrolled_at,
            "enrolled_store": person.enrolled_store,
            "enrolled_till": person.enrolled_till,
            "sealed": enrol.member.sealed is not None,
            "key_held": member_key(tx, ref) is not None,
            "erased": _erasure(tx, ref),
            "balance": member_balance(tx, ref),
            "cards": member_cards(tx, ref),
            "entries": every_visit(tx, ref),
            "counter": counter_member(person, own_store=False),
        }
    return answer


def consent(
    store: HQStore, who: Operator, member: str | None, marketing: str | None, now: dt.datetime
) -> dict[str, Any]:
    ref = member_ref(member)
    if marketing not in ("yes", "no"):
        raise invalid("invalid_marketing", "marketing: yes or no")
    given = 1 if marketing == "yes" else 0
    ensure_tables(store)
    with store.write() as tx:
        if _enrolment(tx, ref) is None:
            raise refused("unknown_member", f"member {ref}: HQ holds no enrolment", http_status=404)
        if tx.one("SELECT 1 FROM hq_erasures WHERE member_id = ?", (ref,)):
            raise refused("member_erased", f"member {ref}: erased", http_status=409)
        tx.run(
            "INSERT INTO hq_consents (member_id, marketing, at, operator) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (member_id) DO UPDATE SET marketing = excluded.marketing, "
            "at = excluded.at, operator = excluded.operator",
            (ref, given, utc_text(now), who.name),
        )
        tx.run("UPDATE ins_members SET consent = ? WHERE member_id = ?", (given, ref))
        record(tx, who, "member_consent", ref, f"marketing {marketing}", now, {"marketing": given})
    return {"member_id": ref, "marketing": bool(given)}


def retention_days(store: HQStore, given: int | None) -> int:
    if given is not None:
        if given < 1:
            raise invalid("invalid_lapsed_days", "lapsed-days: a whole number of days >= 1")
        return given
    with store.read() as tx:
        row = tx.one("SELECT value FROM hq_meta WHERE key = ?", (RETENTION_KEY,))
    return int(row[0]) if row and str(row[0]).isdigit() else DEFAULT_RETENTION_DAYS


def lapsed(tx: Tx, since: dt.datetime) -> list[str]:
    """Members not erased whose accounts saw no entry after ``since``."""
    rows = tx.all(
        "SELECT m.member_id FROM entries m WHERE m.kind = 'enrol' AND m.member_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM hq_erasures x WHERE x.member_id = m.member_id) "
        "AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.ts > ? AND (e.member_id = m.member_id "
        "OR e.account = m.member_id OR e.account IN (SELECT 'C' || c.card FROM entries c "
        "WHERE c.member_id = m.member_id AND c.card IS NOT NULL))) ORDER BY m.member_id",
        (since.isoformat(),),
    )
    return sorted({str(row[0]) for row in rows})


def retention(
    store: HQStore, who: Operator, days: int | None, dry_run: bool, now: dt.datetime
) -> dict[str, Any]:
    period = retention_days(store, days)
    since = now - dt.timedelta(days=period)
    ensure_tables(store)
    if dry_run:
        with store.read() as tx:
            found = lapsed(tx, since)
        return {"lapsed_days": period, "dry_run": True, "members": found, "erased": 0}
    why = f"retention: no activity for {period} days"
    with store.write() as tx:
        found = lapsed(tx, since)
        for member in found:
            _erase(tx, who, member, why, now)
    if found:
        store.compact(ERASED_TABLES)
    return {"lapsed_days": period, "dry_run": False, "members": found, "erased": len(found)}


def consent_entries(tx: Tx, member: str) -> list[Consent]:
    """The consent entries tills recorded for ``member`` (newest last)."""
    rows = tx.all("SELECT body FROM entries WHERE kind = 'consent' ORDER BY ts, seq")
    found = [readable(Kind.CONSENT, json.loads(str(row[0]))) for row in rows]
    return [body for body in found if isinstance(body, Consent) and body.member_id == member]
