"""HQ's suggestions at the counter (issue 15): whom a cashier should greet with what.

HQ already knows whom to call back, whose birthday is coming, who is lapsing and
whom a campaign targets (``sync.hq.insight.audience``, ``reports``, ``campaigns``).
This module turns those lists into *suggestions* for the tills: one per member and
reason, with a short text in plain words, an optional offer and a validity window,
for members who gave marketing consent (``ins_members.consent = 1``; an erased
member has consent 0) only.

- **Rules** are HQ configuration (``hq_meta`` key ``suggestion_rules``, JSON; ``hq
  suggestion-rules``): which reasons are on, their thresholds, texts and offers (the
  campaigns' offer grammar), a rank each (lower first) and a bound on the set. The
  defaults are the reports' own definitions (``DEFAULT_RULES``).
- **The set** is worked out at most every ``refresh_minutes`` (``prepare``, called by
  the download before its snapshot and by the report) into ``hq_suggestions``,
  which keeps every suggestion HQ made (``current`` marks today's set) so that
  reports can count "suggested"; rows over for ``KEEP_DAYS`` are deleted.
- **Ids are stable**: a hash of member, reason and window. Windows are fixed blocks
  of ``window_days`` counted from 1970-01-01 (the same member and reason keep one id
  for the block, and an answer given once is recognised); a birthday's starts
  ``days`` before the block that holds the birthday (a till learns the block, not
  the day); a campaign's is its days.
- **The download** (``device_suggestions``) sends the current set, re-checked at
  that moment against consent, erasure and the answers HQ holds (a withdrawal or an
  erasure at HQ takes effect at the next download, not the next recompute). A
  suggestion's own offer goes into the same download's ``offers`` for the member.
- **Answers** are ``suggestion_answer`` entries, read by batch cursor into
  ``hq_suggestion_answers`` (``refresh_answers``); a suggestion answered at any till
  is not sent again.
"""

# ruff: noqa: S608 -- SQL here is built from constant fragments; values are bound.

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.entries import Kind, SuggestionAnswer, readable
from agent.suggestions import REASONS, TEXT_LIMIT
from sync.errors import SyncError, invalid
from sync.hq.console.audit_log import record
from sync.hq.db import HQStore, Tx
from sync.hq.insight.batches import EntryRow, follow_batches
from sync.hq.insight.operators import Operator
from sync.hq.insight.reports import Period, Report
from sync.hq.insight.response import decimal_share

RULES_KEY = "suggestion_rules"
MADE_KEY = "suggestions_made_at"
KEEP_DAYS = 400  # what HQ suggested stays countable this long after it ended
_EPOCH = dt.date(1970, 1, 1)

DEFAULT_RULES: dict[str, Any] = {
    "max_per_download": 20_000,
    "refresh_minutes": 5,
    "window_days": 14,
    "reasons": {
        "expiring_points": {
            "on": True,
            "rank": 1,
            "min_points": 100,
            "days": 30,
            "text": "{points} points expire within 30 days: remind the member to use them",
            "offer": "",
        },
        "at_risk": {
            "on": True,
            "rank": 2,
            "text": "A good customer we see less often: thank them for coming back",
            "offer": "voucher:5.00",
        },
        "birthday": {
            "on": True,
            "rank": 3,
            "days": 14,
            "text": "Birthday around now: wish them a happy birthday and offer the birthday gift",
            "offer": "gift:Birthday gift at the counter",
        },
        "new_member": {
            "on": True,
            "rank": 4,
            "after_days": 14,
            "within_days": 60,
            "text": "New member on a second visit: welcome them back, points count double",
            "offer": "multiplier:2",
        },
        "campaign": {"on": True, "rank": 5, "text": "Offer for this member: {title}"},
        "lapsed": {
            "on": True,
            "rank": 6,
            "days": 180,
            "text": "We have not seen this member for months: welcome them back",
            "offer": "",
        },
    },
}
# Each reason's thresholds: (key, least, most).
_LIMITS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "birthday": (("days", 1, 60),),
    "expiring_points": (("min_points", 1, 1_000_000_000), ("days", 30, 90)),
    "at_risk": (),
    "lapsed": (("days", 30, 3_650),),
    "new_member": (("after_days", 1, 365), ("within_days", 2, 730)),
    "campaign": (),
}
_TOP = (("max_per_download", 1, 20_000), ("refresh_minutes", 0, 1_440), ("window_days", 1, 90))


# -- the rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    name: str
    rank: int
    text: str
    offer: tuple[str, str, str] | None  # (kind, value, title) in the campaigns' grammar
    limits: dict[str, int]


@dataclass(frozen=True)
class Rules:
    max_per_download: int
    refresh_minutes: int
    window_days: int
    reasons: dict[str, Reason]  # the reasons that are on
    document: dict[str, Any]  # as given, defaults filled in


def _bad(where: str, problem: str) -> SyncError:
    return invalid("invalid_rules", f"suggestion rules: {where}: {problem}")


def _whole(values: dict[str, Any], key: str, least: int, most: int, where: str) -> int:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise _bad(f"{where}{key}", f"a whole number from {least} to {most}")
    return value


def _unknown(values: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(values) - allowed)
    if extra:
        raise _bad(f"{where}{extra[0]}", f"unknown key (known: {', '.join(sorted(allowed))})")


def parse_rules(given: Any) -> Rules:
    """Check a rules document (``invalid_rules`` naming the key and the problem);
    keys left out take ``DEFAULT_RULES``."""
    from sync.hq.insight.campaigns import parse_offer

    if not isinstance(given, dict):
        raise _bad("file", "a JSON object")
    _unknown(given, {"reasons", *(key for key, _, _ in _TOP)}, "")
    top = {**DEFAULT_RULES, **given}
    numbers = {key: _whole(top, key, least, most, "") for key, least, most in _TOP}
    reasons_given = top["reasons"]
    if not isinstance(reasons_given, dict):
        raise _bad("reasons", "an object of reason: settings")
    _unknown(reasons_given, set(REASONS), "reasons.")
    document: dict[str, Any] = {**numbers, "reasons": {}}
    reasons: dict[str, Reason] = {}
    for name in REASONS:
        where = f"reasons.{name}."
        settings = reasons_given.get(name, {})
        if not isinstance(settings, dict):
            raise _bad(f"reasons.{name}", "an object")
        limits = _LIMITS[name]
        allowed = {"on", "rank", "text", *(key for key, _, _ in limits)}
        if name != "campaign":
            allowed.add("offer")  # a campaign suggestion carries its campaign's offer
        _unknown(settings, allowed, where)
        values = {**DEFAULT_RULES["reasons"][name], **settings}
        if not isinstance(values["on"], bool):
            raise _bad(f"{where}on", "true or false")
        rank = _whole(values, "rank", 1, 99, where)
        text = values["text"]
        if not isinstance(text, str) or not 1 <= len(text.strip()) <= TEXT_LIMIT:
            raise _bad(f"{where}text", f"plain words, 1 to {TEXT_LIMIT} characters")
        if not text.isprintable():
            raise _bad(f"{where}text", "printable characters only (no line breaks)")
        offer = None
        offer_text = values.get("offer", "")
        if not isinstance(offer_text, str):
            raise _bad(f"{where}offer", "a string: multiplier:M, voucher:AMOUNT, gift:TEXT or ''")
        if offer_text:
            try:
                offer = parse_offer(offer_text)
            except SyncError as error:
                raise _bad(f"{where}offer", error.message.removeprefix("offer: ")) from None
        numbers_of = {key: _whole(values, key, least, most, where) for key, least, most in limits}
        if name == "expiring_points" and numbers_of["days"] not in (30, 90):
            raise _bad(f"{where}days", "30 or 90 (the liability report's horizons)")
        if name == "new_member" and numbers_of["within_days"] <= numbers_of["after_days"]:
            raise _bad(f"{where}within_days", "more than after_days")
        document["reasons"][name] = {"on": values["on"], "rank": rank, "text": text.strip(),
                                     **numbers_of}  # fmt: skip
        if name != "campaign":
            document["reasons"][name]["offer"] = offer_text
        if values["on"]:
            reasons[name] = Reason(name, rank, text.strip(), offer, numbers_of)
    return Rules(
        max_per_download=numbers["max_per_download"],
        refresh_minutes=numbers["refresh_minutes"],
        window_days=numbers["window_days"],
        reasons=reasons,
        document=document,
    )


def rules_of(tx: Tx) -> Rules:
    row = tx.one("SELECT value FROM hq_meta WHERE key = ?", (RULES_KEY,))
    return parse_rules(json.loads(str(row[0])) if row else {})


def read_rules_file(path: Path) -> Rules:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise invalid("invalid_rules", f"suggestion rules: cannot read {path}: {error}") from None
    try:
        given = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad("file", f"{path} is not JSON: {error}") from None
    return parse_rules(given)


def rules_command(
    store: HQStore, path: Path | None, who: Operator, now: dt.datetime
) -> dict[str, Any]:
    """``hq suggestion-rules``: show the rules in force, or set them from a file (the
    whole file is checked first: a bad one writes nothing; a change is written to
    HQ's audit log with the rules it set). A change reaches the tills with the next
    download (the set is worked out again then)."""
    if path is None:
        with store.read() as tx:
            return {"rules": rules_of(tx).document, "set": False}
    rules = read_rules_file(path)
    with store.write() as tx:
        record(tx, who, "suggestion_rules", RULES_KEY, f"from {path.name}", now, rules.document)
        tx.run(
            "INSERT INTO hq_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (RULES_KEY, json.dumps(rules.document, sort_keys=True)),
        )
        tx.run("DELETE FROM hq_meta WHERE key = ?", (MADE_KEY,))
    return {"rules": rules.document, "set": True}


# -- working the set out ------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    suggestion_id: str
    member_id: str
    reason: str
    text: str
    offer_id: str
    offer: tuple[str, str, str] | None
    campaign: str
    home_store: str
    last_visit: str
    valid_from: str
    valid_to: str
    rank: int


def suggestion_id(member: str, reason: str, start: dt.date, end: dt.date) -> str:
    """The same member, reason and window give the same id, download after download."""
    seed = f"{member}\x00{reason}\x00{start.isoformat()}\x00{end.isoformat()}"
    return "s" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def block(today: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """The fixed block of ``days`` days (counted from 1970-01-01) that holds ``today``."""
    start = _EPOCH + dt.timedelta(days=(today - _EPOCH).days // days * days)
    return start, start + dt.timedelta(days=days - 1)


def birthday_window(
    month_day: str, today: dt.date, days: int, blocks: int
) -> tuple[dt.date, dt.date] | None:
    """The window of a birthday (``MM-DD``; 29 February is the 28th in other years)
    that holds ``today``, if any: from ``days`` before the fixed block of ``blocks``
    days that holds the birthday to that block's end. A till learns from it only the
    block a birthday falls in, never the day (decision 0008), and one birthday keeps
    one window, so one id, all year."""
    try:
        month, day = int(month_day[:2]), int(month_day[3:5])
        for year in (today.year - 1, today.year, today.year + 1):
            try:
                birthday = dt.date(year, month, day)
            except ValueError:
                birthday = dt.date(year, month, day - 1)
            start, end = block(birthday, blocks)
            window = (start - dt.timedelta(days=days), end)
            if window[0] <= today <= window[1]:
                return window
    except ValueError:
        return None
    return None


def _homes(tx: Tx, enrolled: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The store each member visits most (ties: the enrolment store, then by name;
    none yet: the enrolment store) and the member's last visit."""
    counts: dict[str, list[tuple[int, int, str]]] = {}
    last: dict[str, str] = {}
    for member, store, visits, day in tx.all(
        "SELECT member, store, COUNT(*), MAX(day) FROM ins_sales "
        "WHERE kind IN ('earn', 'redeem') GROUP BY member, store"
    ):
        name, where = str(member), str(store)
        if name not in enrolled:
            continue
        own = 1 if enrolled[name] == where else 0
        counts.setdefault(name, []).append((int(visits), own, where))
        last[name] = max(last.get(name, ""), str(day))
    homes = {m: max(c, key=lambda t: (t[0], t[1], t[2]))[2] for m, c in counts.items()}
    return {m: homes.get(m, s) for m, s in enrolled.items()}, last


def _text(reason: Reason, **values: str) -> str:
    text = reason.text
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text[:TEXT_LIMIT]


def compute(tx: Tx, dialect: str, rules: Rules, today: dt.date) -> list[Suggestion]:
    """Today's suggestions for consenting members, not answered at any till yet,
    the ``max_per_download`` that matter most."""
    from sync.hq.insight.audience import _rfm_sql, dormant
    from sync.hq.insight.reports import liability_by_member
    from sync.hq.insight.takes import has_tables

    consenting = {
        str(member): (str(store), birthday)
        for member, store, birthday in tx.all(
            "SELECT member_id, store, birthday FROM ins_members WHERE consent = 1 "
            "AND NOT EXISTS (SELECT 1 FROM hq_erasures x WHERE x.member_id = ins_members.member_id)"
        )
    }
    homes, last = _homes(tx, {m: v[0] for m, v in consenting.items()})
    period = Period(None, today.isoformat(), None, today, dialect)
    made: list[Suggestion] = []

    def add(
        member: str,
        reason: Reason,
        window: tuple[dt.date, dt.date],
        text: str,
        offer: tuple[str, str, str] | None = None,
        offer_id: str = "",
        campaign: str = "",
    ) -> None:
        if member not in consenting:
            return
        sid = suggestion_id(member, reason.name, *window)
        offer = offer if offer is not None else reason.offer
        if offer is not None and not offer_id:
            offer_id = sid + "-o"
        made.append(
            Suggestion(
                sid, member, reason.name, text, offer_id, offer, campaign,
                homes[member], last.get(member, ""), window[0].isoformat(),
                window[1].isoformat(), reason.rank,
            )
        )  # fmt: skip

    fixed = block(today, rules.window_days)
    on = rules.reasons
    if "birthday" in on:
        reason = on["birthday"]
        for member, (_, birthday) in consenting.items():
            window = None
            if birthday:
                window = birthday_window(
                    str(birthday), today, reason.limits["days"], rules.window_days
                )
            if window is not None:
                add(member, reason, window, _text(reason))
    if "expiring_points" in on:
        reason = on["expiring_points"]
        for member, points in liability_by_member(tx, period, reason.limits["days"]):
            if points >= reason.limits["min_points"]:
                add(member, reason, fixed, _text(reason, points=str(points)))
    if "at_risk" in on:
        sql, params = _rfm_sql(tx, period)
        for (member,) in tx.all(sql + "SELECT member FROM named WHERE segment = 'at_risk'", params):
            add(str(member), on["at_risk"], fixed, _text(on["at_risk"]))
    if "lapsed" in on:
        reason = on["lapsed"]
        for row in dormant(tx, period, reason.limits["days"])["rows"]:
            add(row["member_id"], reason, fixed, _text(reason))
    if "new_member" in on:
        reason = on["new_member"]
        today_no = (today - _EPOCH).days
        for (member,) in tx.all(
            "SELECT m.member_id FROM ins_members m JOIN ins_sales s ON s.member = m.member_id "
            "AND s.kind = 'earn' AND s.day <= ? WHERE m.consent = 1 AND m.enrolled_no "
            "BETWEEN ? AND ? GROUP BY m.member_id HAVING COUNT(*) = 1",
            (
                today.isoformat(),
                today_no - reason.limits["within_days"],
                today_no - reason.limits["after_days"],
            ),
        ):
            add(str(member), reason, fixed, _text(reason))
    if "campaign" in on and has_tables(tx, dialect):
        reason = on["campaign"]
        for member, offer_id, campaign, kind, value, title, start, end in tx.all(
            "SELECT m.member_id, m.offer_id, c.campaign_id, c.offer_kind, c.offer_value, "
            "c.title, c.valid_from, c.valid_to FROM cmp_members m JOIN cmp_campaigns c "
            "ON c.campaign_id = m.campaign_id WHERE m.arm = 'offer' AND c.valid_from <= ? "
            "AND c.valid_to >= ? AND NOT EXISTS (SELECT 1 FROM cmp_takes t "
            "WHERE t.offer_id = m.offer_id)",
            (today.isoformat(), today.isoformat()),
        ):
            window = (dt.date.fromisoformat(str(start)), dt.date.fromisoformat(str(end)))
            offer = (str(kind), str(value), str(title))
            text = _text(reason, title=str(title))
            add(str(member), reason, window, text, offer, str(offer_id), str(campaign))
    answered = {str(row[0]) for row in tx.all("SELECT suggestion_id FROM hq_suggestion_answers")}
    fresh = {s.suggestion_id: s for s in made if s.suggestion_id not in answered}
    ordered = sorted(fresh.values(), key=lambda s: (s.rank, s.valid_to, s.suggestion_id))
    return ordered[: rules.max_per_download]


def refresh_answers(store: HQStore) -> int:
    """Read the ``suggestion_answer`` entries of every batch stored since the last
    refresh into ``hq_suggestion_answers`` (with the answering till's store)."""

    def apply(tx: Tx, rows: list[EntryRow]) -> int:
        answers = []
        for device, seq, _ts, kind, text, home in rows:
            body = readable(str(kind), json.loads(str(text)))
            if isinstance(body, SuggestionAnswer):
                answers.append(
                    (str(device), int(seq), body.suggestion, body.member_id, body.reason,
                     body.outcome, str(home), body.day)
                )  # fmt: skip
        tx.many(
            "INSERT INTO hq_suggestion_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            answers,
        )
        return len(answers)

    return follow_batches(store, "hq_suggestion_state", (Kind.SUGGESTION_ANSWER,), apply)


def _made_at(tx: Tx) -> dt.datetime | None:
    row = tx.one("SELECT value FROM hq_meta WHERE key = ?", (MADE_KEY,))
    return dt.datetime.fromisoformat(str(row[0])) if row else None


def _due(made: dt.datetime | None, rules: Rules, now: dt.datetime) -> bool:
    return made is None or now - made >= dt.timedelta(minutes=rules.refresh_minutes)


def prepare(store: HQStore, now: dt.datetime, force: bool = False) -> bool:
    """Work the set out again if the last time is ``refresh_minutes`` ago (or
    ``force``); returns whether it did. A fresh set costs one read."""
    with store.read() as tx:
        rules = rules_of(tx)
        if not force and not _due(_made_at(tx), rules, now):
            return False
    from sync.hq.insight.facts import refresh
    from sync.hq.insight.takes import refresh_takes

    refresh(store)
    refresh_takes(store)
    refresh_answers(store)
    with store.write() as tx:
        tx.locked("SELECT batch_no FROM hq_suggestion_state WHERE id = 1")  # one at a time
        if not force and not _due(_made_at(tx), rules, now):
            return False  # another worker did it meanwhile
        found = compute(tx, store.dialect, rules, now.date())
        _store(tx, found, now)
    return True


def _store(tx: Tx, found: list[Suggestion], now: dt.datetime) -> None:
    made = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    tx.run("UPDATE hq_suggestions SET current = 0 WHERE current = 1")
    tx.many(
        "INSERT INTO hq_suggestions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
        "ON CONFLICT (suggestion_id) DO UPDATE SET text = excluded.text, "
        "offer_id = excluded.offer_id, offer_kind = excluded.offer_kind, "
        "offer_value = excluded.offer_value, offer_title = excluded.offer_title, "
        "home_store = excluded.home_store, last_visit = excluded.last_visit, "
        "rank = excluded.rank, current = 1",
        [
            (
                s.suggestion_id, s.member_id, s.reason, s.text, s.offer_id,
                *(s.offer or ("", "", "")), s.campaign, s.home_store, s.last_visit,
                s.valid_from, s.valid_to, s.rank, made,
            )
            for s in found
        ],
    )  # fmt: skip
    over = (now.date() - dt.timedelta(days=KEEP_DAYS)).isoformat()
    tx.run("DELETE FROM hq_suggestions WHERE current = 0 AND valid_to < ?", (over,))
    tx.run(
        "INSERT INTO hq_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (MADE_KEY, made),
    )


# -- to the tills --------------------------------------------------------------------------


def device_suggestions(
    tx: Tx, today: dt.date, offers: list[dict[str, str]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The chain's current set for the download (checked now against consent,
    erasure and answers), and the offers of it that ``offers`` lacks (a suggestion's
    own offer; a campaign's, at a till of another store)."""
    made = _made_at(tx)
    if made is None:
        return [], []  # never worked out: the insight tables may not exist yet
    rules = rules_of(tx)
    rows = tx.all(
        "SELECT s.suggestion_id, s.member_id, s.reason, s.text, s.offer_id, s.home_store, "
        "s.last_visit, s.valid_from, s.valid_to, s.rank, s.offer_kind, s.offer_value, "
        "s.offer_title, s.campaign FROM hq_suggestions s "
        "JOIN ins_members m ON m.member_id = s.member_id AND m.consent = 1 "
        "WHERE s.current = 1 AND s.valid_from <= ? AND s.valid_to >= ? "
        "AND NOT EXISTS (SELECT 1 FROM hq_erasures x WHERE x.member_id = s.member_id) "
        "AND NOT EXISTS (SELECT 1 FROM hq_suggestion_answers a "
        "WHERE a.suggestion_id = s.suggestion_id) "
        "ORDER BY s.rank, s.valid_to, s.suggestion_id LIMIT ?",
        (today.isoformat(), today.isoformat(), rules.max_per_download),
    )
    have = {offer["offer_id"] for offer in offers}
    taken = {str(r[0]) for r in tx.all("SELECT offer_id FROM cmp_takes")} if rows else set()
    items, extra = [], []
    keys = ("suggestion_id", "member_id", "reason", "text", "offer_id", "home_store",
            "last_visit", "valid_from", "valid_to")  # fmt: skip
    for row in rows:
        item: dict[str, Any] = dict(zip(keys, map(str, row[:9]), strict=True))
        item["rank"] = int(row[9])
        offer_id, kind = str(row[4]), str(row[10])
        if offer_id and offer_id in taken:
            item["offer_id"] = ""  # taken already: the suggestion stays, without it
        elif offer_id and kind and offer_id not in have:
            have.add(offer_id)
            extra.append(
                {
                    "offer_id": offer_id,
                    "member_id": item["member_id"],
                    "campaign": str(row[13]) or "suggestion",
                    "kind": kind,
                    "value": str(row[11]),
                    "title": str(row[12]),
                    "valid_from": item["valid_from"],
                    "valid_to": item["valid_to"],
                }
            )
        items.append(item)
    return items, extra


# -- the report ---------------------------------------------------------------------------------


def report(tx: Tx, period: Period) -> Report:
    """``hq report suggestions``: per store and reason, suggestions HQ made (at the
    member's home store), shown (the member had an entry at that store within the
    window: the counter shows them at every scan; the till journals no display),
    and the answers recorded at that store's tills."""
    start, end = period.start or "0000-01-01", period.as_of.isoformat()
    store_clause, store_params = ("AND {col} = ?", [period.store]) if period.store else ("", [])
    counts: dict[tuple[str, str], dict[str, int]] = {}

    def bump(store: str, reason: str, key: str, n: int) -> None:
        row = counts.setdefault(
            (store, reason),
            {"suggested": 0, "shown": 0, "accepted": 0, "declined": 0, "later": 0},
        )
        row[key] += n

    window = "s.valid_from <= ? AND s.valid_to >= ?"
    for store, reason, n in tx.all(
        f"SELECT s.home_store, s.reason, COUNT(*) FROM hq_suggestions s WHERE {window} "
        + store_clause.replace("{col}", "s.home_store")
        + " GROUP BY s.home_store, s.reason",
        [end, start, *store_params],
    ):
        bump(str(store), str(reason), "suggested", int(n))
    # Shown: a (store, suggestion) pair once, whether seen by a sale or an answer.
    shown: set[tuple[str, str, str]] = set()
    for source, member in (("ins_sales", "member"), ("hq_suggestion_answers", "member_id")):
        shown.update(
            (str(store), str(reason), str(sid))
            for store, reason, sid in tx.all(
                f"SELECT DISTINCT v.store, s.reason, s.suggestion_id FROM hq_suggestions s "
                f"JOIN {source} v ON v.{member} = s.member_id AND v.day >= s.valid_from "
                f"AND v.day <= s.valid_to AND v.day >= ? AND v.day <= ? WHERE {window} "
                + store_clause.replace("{col}", "v.store"),
                [start, end, end, start, *store_params],
            )
        )
    for store, reason, _ in shown:
        bump(store, reason, "shown", 1)
    for store, reason, outcome, n in tx.all(
        "SELECT store, reason, outcome, COUNT(*) FROM hq_suggestion_answers "
        "WHERE day >= ? AND day <= ? "
        + store_clause.replace("{col}", "store")
        + " GROUP BY store, reason, outcome",
        [start, end, *store_params],
    ):
        if str(outcome) in ("accepted", "declined", "later"):
            bump(str(store), str(reason), str(outcome), int(n))
    rows = []
    for (store, reason), figures in sorted(counts.items()):
        answered = figures["accepted"] + figures["declined"] + figures["later"]
        share = decimal_share(figures["accepted"], answered) if answered else None
        rows.append({"store": store, "reason": reason, **figures, "acceptance": share})
    keys = ("suggested", "shown", "accepted", "declined", "later")
    totals: dict[str, Any] = {key: sum(row[key] for row in rows) for key in keys}
    answered = totals["accepted"] + totals["declined"] + totals["later"]
    totals["acceptance"] = decimal_share(totals["accepted"], answered) if answered else None
    with_current = tx.one("SELECT COUNT(*) FROM hq_suggestions WHERE current = 1")
    totals["current"] = int(with_current[0]) if with_current else 0
    return {"report": "suggestions", "rows": rows, "totals": totals}


def prepare_report(store: HQStore, _campaign: str | None) -> None:
    """Before the report's snapshot: the answers, and the set if it is due."""
    refresh_answers(store)
    prepare(store, dt.datetime.now(dt.UTC))
