"""The sans-I/O scan decoder: bytes or key events in, scans out.

In the manner of h11: the caller feeds input with the time it arrived and gets back
the scans it completed; ``tick(now)`` lets silence end a swipe, ``deadline()`` says
when the next tick is due, ``finish()`` ends the input. No I/O, no threads, no clock
of its own except the injected wall clock used to check dynamic codes' windows.

Framing (docs/reader-field-notes.md):
- CR, LF, CRLF, TAB, DLE (ID TECH's UIC ``STX track [LRC] DLE``), STX and a configured
  suffix end a line; a configured prefix starts one; ETX ends a line and the swipe.
- A line that starts with a track sentinel holds tracks; ``swipe.SwipeAssembler``
  decides which lines form one swipe. Any other line is a scanned code.
- A swipe is reported at the line end that settles it (a good track with a number);
  the other tracks of the same card that follow (ENTER after every track) are
  absorbed. A swipe that is not settled (read errors only) waits until the swipe
  ends, so that a good track arriving later wins.
- A swipe also ends after ``idle_s`` of silence, which is how a reader that sends no
  terminator (or ENTER after every track) is framed.
- A line shaped like a reader's firmware sign-on (MagTek: ``210888xxLnn``, eight
  digits, a revision letter, two digits) within ``signon_s`` after the port opens is
  dropped, wherever it comes; nothing else is ever dropped for being early.
- Any other line that is neither track data nor a code (binary noise from a reader at
  the wrong baud rate) is ``unreadable``, so a misconfigured reader shows.
- The same scan delivered twice within ``duplicate_s`` is reported once.
- A line longer than ``max_line`` is cut: only a bounded tail is kept, to find the
  terminator, and the line reports ``unreadable``.

"Where there is no timing", as in ``tillpoints decode``, feed everything with one
``now``: silence never ends a swipe, only the rules above do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from drivers.cards import DEFAULT_POLICY, CardPolicy
from drivers.codes import decode_code
from drivers.keys import Keyboard, KeyEvent
from drivers.layouts import LAYOUTS
from drivers.scan import UNREADABLE, Scan, failure
from drivers.swipe import SwipeAssembler
from drivers.tracks import TRACK_STARTS, headless_track, split_tracks

STX, ETX, DLE = 0x02, 0x03, 0x10
_LINE_ENDS = frozenset({0x0D, 0x0A, 0x09, DLE, STX})
_IGNORED_LEADING = b"\x00\x1b"
# MagTek serial readers' sign-on (99875094, "Sign-on ID"): firmware part number,
# revision letter, revision sublevel 01-99.
SIGNON = re.compile(r"[0-9]{8}[A-Z][0-9]{2}")


@dataclass(frozen=True)
class DecoderSettings:
    """How one reader frames its output, and what counts as a member card."""

    policy: CardPolicy = DEFAULT_POLICY
    qr_secret: bytes | None = field(default=None, repr=False)
    # Asked for the QR secret at each code instead, when given: the agent's readers
    # follow the till's secrets file, so a registration takes effect without a restart.
    qr_source: Callable[[], bytes | None] | None = field(default=None, repr=False, compare=False)
    lrc: bool = False
    prefix: bytes = b""
    suffix: bytes = b""
    layout: str = "us"
    idle_s: float = 0.05
    duplicate_s: float = 1.0
    signon_s: float = 2.0
    max_line: int = 512
    swipe_end: Literal["idle", "terminator"] = "idle"


class ScanDecoder:
    """Decodes one reader's output. Not thread-safe: one reader thread feeds it."""

    def __init__(
        self,
        settings: DecoderSettings = DecoderSettings(),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._wall_clock = wall_clock
        self._keyboard = Keyboard(LAYOUTS[settings.layout])
        self._assembler = SwipeAssembler(settings.policy, settings.lrc)
        self._line = bytearray()
        self._overlong = False
        self._last_input: float | None = None
        self._last_scan: Scan | None = None
        self._opened_at: float | None = None
        self._tail = max(len(settings.prefix), len(settings.suffix), 1)

    @property
    def buffered(self) -> int:
        """Bytes held for the current line: never more than ``max_line``."""
        return len(self._line)

    def opened(self, now: float) -> None:
        """The port was (re)opened: forget partial input and expect a sign-on line."""
        self._line.clear()
        self._overlong = False
        self._assembler.discard()
        self._keyboard.reset()
        self._opened_at = now
        self._last_input = None

    def keys_held(self, codes: Iterable[int]) -> None:
        self._keyboard.keys_held(codes)

    def deadline(self) -> float | None:
        """When ``tick`` should next be called, or None if nothing is waiting."""
        waiting = self._line or self._overlong or self._assembler.pending
        if waiting and self._last_input is not None:
            return self._last_input + self.settings.idle_s
        return None

    def feed(self, data: bytes, now: float) -> list[Scan]:
        """Bytes from a serial reader (or typed by a keyboard-wedge reader)."""
        if self._opened_at is None:
            self._opened_at = now
        scans = self.tick(now)
        settings = self.settings
        for byte in data:
            if byte in _LINE_ENDS:
                scans += self._end_line(now)
            elif byte == ETX:
                scans += self._end_line(now)
                scans += self._emit(self._assembler.complete(now))
            else:
                scans += self._append(byte, now, settings)
        self._last_input = now
        return scans

    def _append(self, byte: int, now: float, settings: DecoderSettings) -> list[Scan]:
        line = self._line
        if len(line) >= settings.max_line:
            self._overlong = True
            del line[: len(line) - self._tail]
        line.append(byte)
        for marker in (settings.suffix, settings.prefix):
            if marker and line.endswith(marker):
                del line[-len(marker) :]
                return self._end_line(now)
        return []

    def feed_events(self, events: Iterable[KeyEvent], now: float | None = None) -> list[Scan]:
        """Key events from a keyboard-wedge reader. Each event is timed by ``now`` if
        given (the live reader's clock), else by its own timestamp (a capture)."""
        scans: list[Scan] = []
        for event in events:
            at = event.time if now is None else now
            text = self._keyboard.translate(event)
            if text is None:
                scans += self._lose(at)
            elif text:
                scans += self.feed(text.encode("ascii"), at)
        return scans

    def tick(self, now: float) -> list[Scan]:
        """Let time pass: after ``idle_s`` of silence the current swipe is complete. It is
        stamped with the time of its last byte, which the duplicate rule compares."""
        last = self._last_input
        if last is None or now - last < self.settings.idle_s:
            return []
        scans = self._end_line(last)
        return scans + self._emit(self._assembler.complete(last))

    def finish(self, now: float | None = None) -> list[Scan]:
        """End of input (a file, a replay): whatever is pending is complete."""
        at = now if now is not None else (self._last_input or 0.0)
        scans = self._end_line(at)
        return scans + self._emit(self._assembler.complete(at))

    def interrupt(self) -> bool:
        """The reader vanished: drop the partial swipe. True if one was dropped."""
        dropped = bool(self._line) or self._overlong
        dropped = self._assembler.discard() or dropped
        self._line.clear()
        self._overlong = False
        self._keyboard.reset()
        self._last_input = None
        return dropped

    def _lose(self, now: float) -> list[Scan]:
        self.interrupt()
        return self._emit([failure(UNREADABLE, now, "dropped")])

    def _end_line(self, now: float) -> list[Scan]:
        if self._overlong:
            self._line.clear()
            self._overlong = False
            done = [*self._assembler.complete(now), failure(UNREADABLE, now, "overlong")]
            return self._emit(done)
        line = bytes(self._line)
        raw = line.lstrip(_IGNORED_LEADING)
        self._line.clear()
        if not raw:
            if b"\x00" in line:  # NUL bytes only: line noise, not a blank line
                noise = failure(UNREADABLE, now, "noise")
                return self._emit([*self._assembler.complete(now), noise])
            return []
        text = raw.decode("latin-1")
        if self._signon(text, now):
            return []
        if text[0] in TRACK_STARTS:
            tracks, garbled = split_tracks(text, self.settings.lrc)
            done = self._assembler.add_line(tracks, garbled, now)
            if self.settings.swipe_end == "terminator":
                done += self._assembler.complete(now)
            return self._emit(done)
        done = self._assembler.complete(now)
        s = self.settings
        if headless_track(text, s.lrc):
            code = failure(UNREADABLE, now, "garbled")
        else:
            secret = s.qr_source() if s.qr_source is not None else s.qr_secret
            code = decode_code(text, s.policy, secret, self._wall_clock(), now)
        done.append(code)
        return self._emit(done)

    def _signon(self, text: str, now: float) -> bool:
        opened = self._opened_at if self._opened_at is not None else now
        window = self.settings.signon_s
        return window > 0 and now - opened <= window and SIGNON.fullmatch(text) is not None

    def _emit(self, scans: list[Scan]) -> list[Scan]:
        kept: list[Scan] = []
        for scan in scans:
            last = self._last_scan
            repeated = last is not None and last.key == scan.key
            if repeated and last is not None and abs(scan.at - last.at) < self.settings.duplicate_s:
                continue
            self._last_scan = scan
            kept.append(scan)
        return kept


def decode_stream(
    data: bytes,
    settings: DecoderSettings = DecoderSettings(),
    wall_clock: Callable[[], float] = time.time,
) -> list[Scan]:
    """Decode a byte capture with no timing: all of it arrives at one instant."""
    decoder = ScanDecoder(settings, wall_clock)
    return decoder.feed(data, 0.0) + decoder.finish()


def decode_events(
    events: Iterable[KeyEvent],
    settings: DecoderSettings = DecoderSettings(signon_s=0.0),
    wall_clock: Callable[[], float] = time.time,
) -> list[Scan]:
    """Decode a key-event capture, timed by the events' own timestamps."""
    decoder = ScanDecoder(settings, wall_clock)
    return decoder.feed_events(events) + decoder.finish()
