"""Which tracks belong to one swipe, and what the swipe says.

Readers disagree on framing (docs/reader-field-notes.md): MagTek sends ``%T1?;T2?+T3?`` then one CR;
ID TECH sends ENTER after every track; some send nothing at the end. So a line end
does not end a swipe. A swipe ends when the decoder says so (silence, ETX, a code
line, end of input), or when a track cannot belong to it: its track slot is taken,
or it carries a different number than the tracks already read on an earlier line.
Tracks of the same line with different numbers make the swipe unreadable instead:
one reader message holds one card.

A swipe is reported as soon as a line end leaves it *settled*: a good track with a
number, and no junk or conflict. Every track that can still join it carries the same
number or none, so its outcome cannot change; such tracks are absorbed with no second
scan until the swipe ends. An unsettled swipe (only read errors, garbled tracks, a
good track without a number, junk, a conflict) waits for the swipe to end, so that a
good track of the same swipe arriving later still wins.

Track 3 never decides which card was swiped when track 1 or 2 read well: many
cards carry another number or another format there (ISO/IEC 4909 data, a second
account, an AAMVA licence's ``#`` track), so its number neither conflicts with the
swipe's nor starts another swipe. It decides only when it is the one good numbered
track. Track 3 may start with ``;`` like track 2 (ID TECH): a ``;`` track is track 2
unless track 2 is already read and the track, read as track 3, carries the same
number, starts with ``0`` (ISO/IEC 4909's format code; no card number does) or is
longer than a track 2 can be.
"""

from __future__ import annotations

from drivers.cards import CardClass, CardPolicy
from drivers.scan import UNREADABLE, Scan, Source, failure, member
from drivers.tracks import RawTrack, TrackRead, parse_track, too_long_for

_SOURCES: dict[int, Source] = {1: "track1", 2: "track2", 3: "track3"}
_PREFERENCE = (2, 1, 3)


class Swipe:
    """The tracks read so far for one swipe, at most one per track number."""

    def __init__(self) -> None:
        self.tracks: dict[int, TrackRead] = {}
        self.lines: dict[int, int] = {}
        self.conflict = False
        self.garbled = False
        self.reported = False

    def __bool__(self) -> bool:
        return bool(self.tracks) or self.garbled

    def number(self) -> bytes | None:
        """The card's number as tracks 1 and 2 carry it (track 3 does not count)."""
        for read in self.tracks.values():
            if read.fingerprint is not None and read.track != 3:
                return read.fingerprint
        return None

    def fits(self, read: TrackRead) -> bool:
        if read.track in self.tracks:
            return False
        mine = self.number()
        if mine is None or read.fingerprint is None or read.fingerprint == mine:
            return True
        return read.track == 3

    def settled(self) -> bool:
        """Whether the outcome is known: tracks that can still join carry this number
        or none (or are track 3), and the best numbered good track decides."""
        if self.conflict or self.garbled:
            return False
        return any(
            read.good and read.fingerprint is not None and read.track != 3
            for read in self.tracks.values()
        )

    def outcome(self, at: float) -> Scan:
        """ISO 7813 tracks of one card carry one number; the best good track decides,
        so a reader error on one track next to a good track still reads the card."""
        if self.conflict or self.garbled:
            return failure(UNREADABLE, at, "conflict" if self.conflict else "garbled")
        good = [read for read in self.tracks.values() if read.good]
        if not good:
            faults = [read.fault for read in self.tracks.values()]
            reason = next((f for f in ("reader_error", "bad_lrc") if f in faults), "garbled")
            return failure(UNREADABLE, at, reason)
        good.sort(key=lambda read: _PREFERENCE.index(read.track))
        numbered = [read for read in good if read.fingerprint is not None]
        best = (numbered or good)[0]
        card_class = best.card_class or CardClass.FOREIGN_CARD
        same_card = [r for r in numbered if r.fingerprint == best.fingerprint]
        if any(r.card_class is CardClass.PAYMENT_CARD for r in same_card):
            card_class = CardClass.PAYMENT_CARD  # another track of it says it is a bank card
        if card_class is CardClass.MEMBER and best.card is not None:
            return member(best.card, tuple(_SOURCES[r.track] for r in same_card), at)
        return failure(card_class.value, at)


class SwipeAssembler:
    """Groups the tracks of successive lines into swipes."""

    def __init__(self, policy: CardPolicy, lrc: bool) -> None:
        self._policy = policy
        self._lrc = lrc
        self._swipe = Swipe()
        self._line = 0

    @property
    def pending(self) -> bool:
        """A swipe is waiting to be reported (an already reported one only absorbs)."""
        return bool(self._swipe) and not self._swipe.reported

    def add_line(self, tracks: list[RawTrack], garbled: bool, at: float) -> list[Scan]:
        """Add the tracks of one (ended) line; returns the swipes this line completed,
        then the current swipe if the line settled it."""
        self._line += 1
        done: list[Scan] = []
        for raw in tracks:
            read = self._place(raw)
            if not self._swipe.fits(read):
                same_line = self._swipe.lines.get(self._line, 0) > 0
                conflict = same_line and read.track not in self._swipe.tracks
                if conflict and not self._swipe.reported:
                    self._swipe.conflict = True
                    continue
                done.extend(self.complete(at))
                # A line that disagrees with itself stays unreadable even when its
                # first tracks were absorbed by an already reported swipe.
                self._swipe.conflict = conflict
            self._swipe.tracks[read.track] = read
            self._swipe.lines[self._line] = self._swipe.lines.get(self._line, 0) + 1
        swipe = self._swipe
        if garbled:
            swipe.garbled = True
        if not swipe.reported and swipe.settled():
            swipe.reported = True
            done.append(swipe.outcome(at))
        return done

    def _place(self, raw: RawTrack) -> TrackRead:
        if raw.sentinel == "%":
            return parse_track(1, raw, self._policy, self._lrc)
        if raw.sentinel in "+#!":
            return parse_track(3, raw, self._policy, self._lrc)
        as_track2 = parse_track(2, raw, self._policy, self._lrc)
        swipe = self._swipe
        if 2 not in swipe.tracks or 3 in swipe.tracks:
            return as_track2
        as_track3 = parse_track(3, raw, self._policy, self._lrc)
        mine = swipe.number()
        same = as_track3.fingerprint is not None and mine in (None, as_track3.fingerprint)
        # ISO/IEC 4909 track 3 starts with a format code 0x; no card number starts
        # with 0 (major industry identifier 0 is not issued to cards).
        if same or too_long_for(2, raw, self._lrc) or raw.body.startswith("0"):
            return as_track3
        return as_track2

    def complete(self, at: float) -> list[Scan]:
        """End the current swipe, if any, and report it unless it was already."""
        scans = [self._swipe.outcome(at)] if self.pending else []
        self._swipe = Swipe()
        return scans

    def discard(self) -> bool:
        """Forget the current swipe (input was lost); True if an unreported one was."""
        had = self.pending
        self._swipe = Swipe()
        return had
