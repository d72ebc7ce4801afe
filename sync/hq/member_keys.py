"""HQ's side of the sealed enrolments (issue 17, ``agent.privacy``): the members'
keys that arrive beside an upload, kept in ``hq_member_keys`` (migration
``009_privacy``) outside the stored journals, and the readers' way to open a seal.

At ingest a key must open the seal of the batch's enrolment of its member
(``bad_member_key``, the batch refused whole); a key for a member the batch does not
enrol is refused the same way. A sealed enrolment that comes without its key is
stored (a chain must never stall) and stays unreadable at HQ. A member HQ erased before
(``hq_erasures``) gets no key back. The entry's phone key column, which HQ's
lookups and duplicate alerts use, is filled from the opened seal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from agent.chain import Entry
from agent.entries import Enrol, Member
from agent.errors import LedgerError
from agent.privacy import disclosed, key_from_text, key_text
from sync.errors import invalid
from sync.hq.db import Tx, looked_up
from sync.protocol import utc_text

_PHONE_COLUMN = 15  # of sync.hq.ingest's row


def take_keys(
    tx: Tx,
    device: str,
    fresh: tuple[Entry, ...] | list[Entry],
    rows: list[tuple[Any, ...]],
    keys: dict[str, str],
    now: dt.datetime,
    enrolments: Mapping[int, Enrol],
) -> list[tuple[Any, ...]]:
    """Store the keys of the batch's sealed enrolments; ``rows`` with their phone keys.
    ``enrolments``: the typed bodies of ``fresh``'s enrolments by position (ingest
    read them already, to check their hashes)."""
    wanted = dict(keys)
    out: list[tuple[Any, ...]] = []
    kept: list[tuple[str, str, str, str]] = []
    for position, (entry, row) in enumerate(zip(fresh, rows, strict=True)):
        body = enrolments.get(position)
        if body is None or body.member.sealed is None:
            out.append(row)
            continue
        member_id = body.member.member_id
        text = wanted.pop(member_id, None)
        if text is None:
            # Stored all the same (a chain must never stall), unreadable at HQ: as if
            # erased. A till of this version always sends the key.
            out.append(row)
            continue
        key = key_from_text(text)
        if key is None:
            raise invalid("bad_member_key", f"member_keys: {member_id}: not a 32-byte key")
        try:
            opened = disclosed(body.member, key)
        except LedgerError:
            raise invalid(
                "bad_member_key", f"entry {entry.seq}: the key does not open {member_id}'s seal"
            ) from None
        kept.append((member_id, key_text(key), device, utc_text(now)))
        out.append((*row[:_PHONE_COLUMN], opened.phone_key, *row[_PHONE_COLUMN + 1 :]))
    if wanted:
        raise invalid(
            "bad_member_key", f"member_keys: {sorted(wanted)[0]} is not enrolled in this batch"
        )
    erased = _erased(tx, [member_id for member_id, _, _, _ in kept])
    # Row by row, not ``Tx.add_new``: a member's key never passes through a staging
    # table, whose file an erasure would not clean.
    tx.many(
        "INSERT INTO hq_member_keys (member_id, key, device, stored_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [row for row in kept if row[0] not in erased],
    )
    return out


def member_key(tx: Tx, member_id: str) -> bytes | None:
    row = tx.one("SELECT key FROM hq_member_keys WHERE member_id = ?", (member_id,))
    return None if row is None else key_from_text(str(row[0]))


def opened(tx: Tx, member: Member) -> Member:
    """``member`` with its personal fields, if HQ still holds its key (all None once
    erased); a clear-text enrolment (before issue 17) as it is, unless erased."""
    return opened_all(tx, [member])[0]


def opened_all(tx: Tx, members: Sequence[Member]) -> list[Member]:
    """``opened`` for each of ``members``, in their order: the keys and erasures
    looked up a few hundred at a time."""
    sealed = [member.member_id for member in members if member.sealed is not None]
    keys = {
        str(member_id): key_from_text(str(text))
        for member_id, text in looked_up(
            tx, "SELECT member_id, key FROM hq_member_keys WHERE member_id IN ({})", sealed
        )
    }
    erased = _erased(tx, [member.member_id for member in members if member.sealed is None])
    out: list[Member] = []
    for member in members:
        if member.sealed is None:
            out.append(_blank(member) if member.member_id in erased else member)
        else:
            key = keys.get(member.member_id)
            out.append(disclosed(member, key) if key is not None else _blank(member))
    return out


def _erased(tx: Tx, member_ids: Sequence[str]) -> set[str]:
    """Which of ``member_ids`` HQ has erased."""
    sql = "SELECT member_id FROM hq_erasures WHERE member_id IN ({})"
    return {str(row[0]) for row in looked_up(tx, sql, member_ids)}


def _blank(member: Member) -> Member:
    return dataclasses.replace(
        member,
        name=None,
        phone_key=None,
        birthday=None,
        gender=None,
        district=None,
        household=None,
        phone_last4=None,
    )


def erased_between(tx: Tx, cursor: int, upto: int) -> list[str]:
    """The members erased after download cursor ``cursor`` up to ``upto``."""
    rows = tx.all(
        "SELECT member_id FROM hq_erasures WHERE batch_no > ? AND batch_no <= ? ORDER BY batch_no",
        (cursor, upto),
    )
    return [str(row[0]) for row in rows]


def consent_rows(tx: Tx, said: list[tuple[str, int, str]]) -> list[tuple[int, str]]:
    """``(consent, member_id)`` for each ``(member_id, marketing, at)`` a till said,
    where it still counts: an erased member's is always 0; HQ's own later decision
    (``hq_consents``, ``hq member consent``) wins over an earlier word of a till."""
    named = [member_id for member_id, _, _ in said]
    erased = _erased(tx, named)
    decided = {
        str(member_id): (int(marketing), str(at))
        for member_id, marketing, at in looked_up(
            tx, "SELECT member_id, marketing, at FROM hq_consents WHERE member_id IN ({})", named
        )
    }
    out: list[tuple[int, str]] = []
    for member_id, marketing, at in said:
        hq = decided.get(member_id)
        if member_id in erased:
            out.append((0, member_id))
        elif hq is not None and (not at or _instant(hq[1]) > _instant(at)):
            out.append((hq[0], member_id))
        else:
            out.append((1 if marketing else 0, member_id))
    return out


def _instant(text: str) -> dt.datetime:
    """An ISO time, UTC if it names no zone (HQ's ``Z``, a till's offset)."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
