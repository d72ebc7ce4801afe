"""Key events from a keyboard-wedge reader, turned into the characters it typed.

Own frozen type for events (python-evdev's ``InputEvent`` stays in the I/O shell).
Rules from the Linux input documentation and docs/reader-field-notes.md:
- values are 0 up, 1 down, 2 autorepeat; characters are produced on key-down and
  autorepeat is ignored (a reader never holds a key);
- Shift may be released before the shifted key's own key-up, so the modifier state
  is sampled at key-down;
- ``SYN_DROPPED`` means the kernel's buffer overflowed: everything up to the next
  ``SYN_REPORT`` is discarded, the partial swipe is lost, and modifier state must be
  re-read (``keys_held``) because key-ups may have been dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.layouts import Layout

EV_SYN = 0
EV_KEY = 1
SYN_REPORT = 0
SYN_DROPPED = 3
KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2
KEY_ENTER = 28
KEY_KPENTER = 96
KEY_TAB = 15
KEY_CAPSLOCK = 58
_SHIFTS = frozenset({42, 54})
_ALTGR = 100
_OTHER_MODIFIERS = frozenset({29, 97, 56, 125, 126})
_MODIFIERS = _SHIFTS | _OTHER_MODIFIERS | {_ALTGR}
# ASCII SUB ("substitute"): a key we cannot type. It is in no track's character set,
# so a swipe with such a key is unreadable rather than silently shortened.
UNKNOWN_KEY = "\x1a"


@dataclass(frozen=True)
class KeyEvent:
    time: float
    type: int
    code: int
    value: int

    @property
    def dropped(self) -> bool:
        return self.type == EV_SYN and self.code == SYN_DROPPED


class Keyboard:
    """Modifier state and layout lookup for one reader."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._held: set[int] = set()
        self._caps = False
        self._dropping = False

    def keys_held(self, codes: Iterable[int]) -> None:
        """Set the modifier state from the device's real key state (``active_keys()``)."""
        self._held = {code for code in codes if code in _MODIFIERS}

    def reset(self) -> None:
        self._held.clear()
        self._dropping = False

    def translate(self, event: KeyEvent) -> str | None:
        """The text a single event typed (often ``""``), or None when input was lost."""
        if event.type == EV_SYN:
            if event.code == SYN_DROPPED:
                self._dropping = True
                self._held.clear()
                return None
            if event.code == SYN_REPORT:
                self._dropping = False
            return ""
        if self._dropping or event.type != EV_KEY:
            return ""
        if event.code in _MODIFIERS:
            if event.value == KEY_DOWN:
                self._held.add(event.code)
            elif event.value == KEY_UP:
                self._held.discard(event.code)
            return ""
        if event.value != KEY_DOWN:
            return ""
        return self._character(event.code)

    def _character(self, code: int) -> str:
        if code in (KEY_ENTER, KEY_KPENTER):
            return "\r"
        if code == KEY_TAB:
            return "\t"
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return ""
        if _ALTGR in self._held:
            char = self._layout.altgr.get(code, UNKNOWN_KEY)
        elif code in self._layout.keys:
            plain, shifted = self._layout.keys[code]
            shift = bool(self._held & _SHIFTS)
            if self._caps and plain.isalpha():
                shift = not shift
            char = shifted if shift else plain
        else:
            char = UNKNOWN_KEY
        if self._held & _OTHER_MODIFIERS or not char.isascii():
            return UNKNOWN_KEY
        return char
