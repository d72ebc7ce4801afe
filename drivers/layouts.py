"""Keyboard layouts for keyboard-wedge readers: Linux key codes to characters.

A wedge reader sends key *positions* (``linux/input-event-codes.h``), chosen for the
layout it was configured for. We decode with the reader's layout, never the host's
(docs/reader-field-notes.md, python-evdev). Each layout is a table ``code -> (plain, shifted)`` plus
an AltGr table. Dead keys (``^`` on German) are taken as the plain character: a
reader configured for German sends ``^`` then space, and a track 1 name field
tolerates the space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Layout:
    name: str
    keys: Mapping[int, tuple[str, str]]
    altgr: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))


def _table(pairs: Mapping[int, str]) -> dict[int, tuple[str, str]]:
    return {code: (chars[0], chars[1]) for code, chars in pairs.items()}


def _letters(start: int, row: str) -> dict[int, str]:
    return {start + offset: letter + letter.upper() for offset, letter in enumerate(row)}


# Keypad keys type the same on every layout (with NumLock on, as readers use them).
_KEYPAD = {
    71: "77", 72: "88", 73: "99", 74: "--", 75: "44", 76: "55", 77: "66", 78: "++",
    79: "11", 80: "22", 81: "33", 82: "00", 83: "..", 55: "**", 98: "//",
}  # fmt: skip

_US = {
    2: "1!", 3: "2@", 4: "3#", 5: "4$", 6: "5%", 7: "6^", 8: "7&", 9: "8*", 10: "9(",
    11: "0)", 12: "-_", 13: "=+", 26: "[{", 27: "]}", 39: ";:", 40: "'\"", 41: "`~",
    43: "\\|", 51: ",<", 52: ".>", 53: "/?", 57: "  ", 86: "\\|",
    **_letters(16, "qwertyuiop"), **_letters(30, "asdfghjkl"), **_letters(44, "zxcvbnm"),
    **_KEYPAD,
}  # fmt: skip

_UK = {**_US, 3: '2"', 4: "3£", 40: "'@", 41: "`¬", 43: "#~", 86: "\\|"}

_DE = {
    **_US,
    3: "2\"", 4: "3§", 7: "6&", 8: "7/", 9: "8(", 10: "9)", 11: "0=", 12: "ß?", 13: "´`",
    21: "zZ", 44: "yY", 26: "üÜ", 27: "+*", 39: "öÖ", 40: "äÄ", 41: "^°", 43: "#'",
    51: ",;", 52: ".:", 53: "-_", 86: "<>",
}  # fmt: skip
_DE_ALTGR = {16: "@", 8: "{", 9: "[", 10: "]", 11: "}", 12: "\\", 27: "~", 86: "|", 18: "€"}

LAYOUTS: Mapping[str, Layout] = MappingProxyType(
    {
        "us": Layout("us", MappingProxyType(_table(_US))),
        "uk": Layout("uk", MappingProxyType(_table(_UK)), MappingProxyType({5: "€"})),
        "de": Layout("de", MappingProxyType(_table(_DE)), MappingProxyType(_DE_ALTGR)),
    }
)
