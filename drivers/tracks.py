"""Magnetic-stripe tracks as readers send them: ISO/IEC 7813 (tracks 1 and 2) and
ISO/IEC 4909 (track 3). Pure functions over one line of text.

Layouts (docs/reader-field-notes.md, "Tracks"):
- track 1: ``%`` format code, PAN (<= 19 digits) ``^`` name ``^`` YYMM, service code,
  discretionary data ``?``; characters 0x20-0x5F; at most 79 with sentinels and LRC.
- track 2: ``;`` PAN ``=`` YYMM ... ``?``; characters 0x30-0x3F; at most 40.
- track 3: ``;`` or ``+`` two-digit format code, PAN ``=`` ... ``?``; at most 107;
  or ``#`` (AAMVA) or ``!`` (CDL) licences: track 1's character set, no card number.
- ``^`` in place of track 1's expiry or service code marks it absent (ISO/IEC 7813).

A reader that failed a track sends ``E`` as its only character (``%E?``, ``;E?``,
``+E?``). Loyalty cards often put 8-20 digits on track 2 with or without ``=``, and
programme cards go past ISO's 19, so PANs of 6 to 32 digits are accepted. The number
of a payment card is kept only as a keyed fingerprint, never as digits, from the
moment it is recognised.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from drivers.cards import CardClass, CardPolicy, classify

TRACK_STARTS = "%;+#!"
# Track 3 sentinels of driving licences: ``#`` (AAMVA), ``!`` (CDL, MagTek 99875094).
_LICENCE_STARTS = "#!"
_SET_1 = frozenset(chr(c) for c in range(0x20, 0x60)) - set("%;?")
_SET_23 = frozenset(chr(c) for c in range(0x30, 0x40)) - set(";?")
_MAX_LENGTH = {1: 79, 2: 40, 3: 107}
# ISO/IEC 7812 stops at 19 digits; programme cards (gift cards, student ids) go past
# it, up to the longest ``card_length`` a chain may configure.
_PAN_LENGTHS = range(6, 33)
# ISO/IEC 7813 track 1 format codes: ``B`` is the financial layout; ``A`` and ``C``-``Z``
# are reserved or issuers' own, and fleet and private-label cards use digits too.
_FORMAT_CODES = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# Compared between tracks of one swipe to tell whether they carry the same number,
# without keeping a payment card's digits around to compare.
_FINGERPRINT_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class RawTrack:
    """One sentinel-delimited segment of a line. ``fault`` is set when the end sentinel
    is missing or the transmitted LRC is wrong."""

    sentinel: str
    body: str = field(repr=False)
    fault: str | None = None


@dataclass(frozen=True)
class TrackRead:
    """A track after parsing. ``card`` is None for a payment card, a fault, or a good
    read that carries no number in a layout we know."""

    track: int
    fault: str | None = None
    card: str | None = field(default=None, repr=False)
    fingerprint: bytes | None = field(default=None, repr=False)
    card_class: CardClass | None = None

    @property
    def good(self) -> bool:
        return self.fault is None


def lrc_char(sentinel: str, body: str) -> str:
    """The LRC character for ``sentinel + body + '?'``: XOR of the characters' data
    bits, 6 bits above 0x20 on track 1 and 4 bits above 0x30 on tracks 2 and 3."""
    if sentinel == "%" or sentinel in _LICENCE_STARTS:
        base, mask = 0x20, 0x3F
    else:
        base, mask = 0x30, 0x0F
    value = 0
    for char in sentinel + body + "?":
        value ^= (ord(char) - base) & mask
    return chr(base + value)


def split_tracks(line: str, lrc: bool) -> tuple[list[RawTrack], bool]:
    """Cut a line that starts with a start sentinel into tracks.

    Returns the tracks and whether anything outside a track was met (which makes the
    whole line garbled). With ``lrc`` the character after each ``?`` is the LRC and is
    consumed whatever it is: it may itself be ``?``, ``;`` or ``=``.
    """
    tracks: list[RawTrack] = []
    index = 0
    while index < len(line):
        sentinel = line[index]
        if sentinel not in TRACK_STARTS:
            return tracks, True
        stops = "%;?" if sentinel == "%" or sentinel in _LICENCE_STARTS else "%;+?"
        end = index + 1
        while end < len(line) and line[end] not in stops:
            end += 1
        body = line[index + 1 : end]
        if end == len(line) or line[end] != "?":
            tracks.append(RawTrack(sentinel, body, "garbled"))
            index = end
            continue
        end += 1
        fault = None
        if lrc:
            if end >= len(line) or line[end] != lrc_char(sentinel, body):
                fault = "bad_lrc"
            end += 1
        tracks.append(RawTrack(sentinel, body, fault))
        index = end
    return tracks, False


def headless_track(text: str, lrc: bool) -> bool:
    """A line without a start sentinel that is still recognisably track data: it ends
    with an end sentinel (before its LRC, if any) in track 1's character set, or is
    track 2 data with a field separator. Such a line is a swipe with a lost start
    sentinel, not a scanned code."""
    ending = text[-2:-1] if lrc else text[-1:]
    if ending == "?" and set(text[: len(text) - int(lrc)]) <= _SET_1 | {"?"}:
        return True
    if "^" in text and set(text) <= _SET_1 and any(c.isdigit() for c in text.split("^")[0]):
        return True  # track 1 that lost both sentinels: B<PAN>^NAME^...
    return "=" in text and set(text) <= _SET_23 | {"?"}


def too_long_for(track: int, raw: RawTrack, lrc: bool) -> bool:
    """Whether ``raw`` is longer than track ``track`` can be (with sentinels and LRC)."""
    return len(raw.body) + 2 + int(lrc) > _MAX_LENGTH[track]


def fingerprint(digits: str) -> bytes:
    return hashlib.blake2b(digits.encode(), key=_FINGERPRINT_KEY, digest_size=16).digest()


def _numbered(track: int, pan: str, policy: CardPolicy, financial: bool = False) -> TrackRead:
    card_class = classify(pan, policy, financial)
    kept = None if card_class is CardClass.PAYMENT_CARD else pan
    return TrackRead(track, None, kept, fingerprint(pan), card_class)


def _pan_ok(pan: str) -> bool:
    return pan.isascii() and pan.isdigit() and len(pan) in _PAN_LENGTHS


def parse_track(track: int, raw: RawTrack, policy: CardPolicy, lrc: bool = False) -> TrackRead:
    """Parse one raw track as track number ``track`` (1, 2 or 3)."""
    if raw.fault is not None:
        return TrackRead(track, raw.fault)
    if raw.body == "E":
        return TrackRead(track, "reader_error")
    if too_long_for(track, raw, lrc):
        return TrackRead(track, "garbled")
    if track == 1:
        return _parse_track1(raw.body, policy)
    if raw.sentinel in _LICENCE_STARTS:
        # AAMVA driving licences: track 3 in track 1's character set, no card number.
        if not set(raw.body) <= _SET_1:
            return TrackRead(3, "garbled")
        return TrackRead(3, card_class=CardClass.FOREIGN_CARD)
    if not set(raw.body) <= _SET_23:
        return TrackRead(track, "garbled")
    if track == 2:
        pan = raw.body.split("=", 1)[0]
        return _numbered(2, pan, policy) if _pan_ok(pan) else TrackRead(2, "garbled")
    pan = raw.body[2:].split("=", 1)[0]
    if raw.body[:2].isdigit() and _pan_ok(pan):
        return _numbered(3, pan, policy)
    return TrackRead(3, card_class=CardClass.FOREIGN_CARD)


def _parse_track1(body: str, policy: CardPolicy) -> TrackRead:
    """``B`` PAN ``^`` NAME ``^`` then expiry, service code and discretionary data, where
    ``^`` stands in for an absent expiry or service code (``^NAME/GIVEN^^^``)."""
    if not body or not set(body) <= _SET_1 or body[0] not in _FORMAT_CODES:
        return TrackRead(1, "garbled")
    fields = body[1:].split("^", 2)
    pan = fields[0].replace(" ", "")
    if len(fields) == 3 and _pan_ok(pan) and len(fields[1]) <= 26:
        return _numbered(1, pan, policy, financial=body[0] == "B")
    if body[0] == "B":
        return TrackRead(1, "garbled")
    return TrackRead(1, card_class=CardClass.FOREIGN_CARD)
