"""A simulated keyboard-wedge reader: text typed as key events, and those events
written in ``evtest``'s text format: the inverse of ``drivers.keys.Keyboard`` and
``drivers.evtest.parse_evtest``, for tests (it was ``drivers/simulate.py``; nothing
in the product typed with it).
"""

from __future__ import annotations

from drivers.keys import EV_KEY, EV_SYN, KEY_ENTER, SYN_REPORT, KeyEvent
from drivers.layouts import LAYOUTS, Layout

KEY_LEFTSHIFT = 42
EV_MSC, MSC_SCAN = 4, 4


def _positions(layout: Layout) -> dict[str, tuple[int, bool]]:
    where: dict[str, tuple[int, bool]] = {"\r": (KEY_ENTER, False)}
    for code, (plain, shifted) in sorted(layout.keys.items(), reverse=True):
        where[shifted] = (code, True)
        where[plain] = (code, False)
    return where


def type_text(
    text: str, layout: str = "us", start: float = 0.0, step: float = 0.003
) -> list[KeyEvent]:
    """Key events a reader configured for ``layout`` sends to type ``text``: each key
    down and up in its own report, Shift around shifted characters."""
    where = _positions(LAYOUTS[layout])
    events: list[KeyEvent] = []
    now = start

    def report(code: int, value: int) -> None:
        nonlocal now
        events.append(KeyEvent(now, EV_KEY, code, value))
        events.append(KeyEvent(now, EV_SYN, SYN_REPORT, 0))
        now += step

    for char in text:
        code, shifted = where[char]
        if shifted:
            report(KEY_LEFTSHIFT, 1)
        report(code, 1)
        report(code, 0)
        if shifted:
            report(KEY_LEFTSHIFT, 0)
    return events


# Linux key code -> (name in linux/input-event-codes.h, USB HID usage on the keyboard
# page 0x07), for the keys a reader types: what evtest prints as ``KEY_...`` and, on
# the MSC_SCAN line before each key, as ``0x70000 + usage`` in hexadecimal.
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_LETTER_CODES = (30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50,
                 49, 24, 25, 16, 19, 31, 20, 22, 47, 17, 45, 21, 44)  # fmt: skip
KEYS: dict[int, tuple[str, int]] = {
    **{code: (f"KEY_{letter.upper()}", 0x04 + index)
       for index, (letter, code) in enumerate(zip(_LETTERS, _LETTER_CODES, strict=True))},
    **{code: (f"KEY_{(code - 1) % 10}", 0x1E + code - 2) for code in range(2, 12)},
    28: ("KEY_ENTER", 0x28), 15: ("KEY_TAB", 0x2B), 57: ("KEY_SPACE", 0x2C),
    12: ("KEY_MINUS", 0x2D), 13: ("KEY_EQUAL", 0x2E), 26: ("KEY_LEFTBRACE", 0x2F),
    27: ("KEY_RIGHTBRACE", 0x30), 43: ("KEY_BACKSLASH", 0x31), 39: ("KEY_SEMICOLON", 0x33),
    40: ("KEY_APOSTROPHE", 0x34), 41: ("KEY_GRAVE", 0x35), 51: ("KEY_COMMA", 0x36),
    52: ("KEY_DOT", 0x37), 53: ("KEY_SLASH", 0x38), 58: ("KEY_CAPSLOCK", 0x39),
    98: ("KEY_KPSLASH", 0x54), 55: ("KEY_KPASTERISK", 0x55), 74: ("KEY_KPMINUS", 0x56),
    78: ("KEY_KPPLUS", 0x57), 96: ("KEY_KPENTER", 0x58), 79: ("KEY_KP1", 0x59),
    80: ("KEY_KP2", 0x5A), 81: ("KEY_KP3", 0x5B), 75: ("KEY_KP4", 0x5C), 76: ("KEY_KP5", 0x5D),
    77: ("KEY_KP6", 0x5E), 71: ("KEY_KP7", 0x5F), 72: ("KEY_KP8", 0x60), 73: ("KEY_KP9", 0x61),
    82: ("KEY_KP0", 0x62), 83: ("KEY_KPDOT", 0x63), 86: ("KEY_102ND", 0x64),
    29: ("KEY_LEFTCTRL", 0xE0), 42: ("KEY_LEFTSHIFT", 0xE1), 56: ("KEY_LEFTALT", 0xE2),
    125: ("KEY_LEFTMETA", 0xE3), 97: ("KEY_RIGHTCTRL", 0xE4), 54: ("KEY_RIGHTSHIFT", 0xE5),
    100: ("KEY_RIGHTALT", 0xE6), 126: ("KEY_RIGHTMETA", 0xE7),
}  # fmt: skip
_SYNS = {0: ("-", "SYN_REPORT"), 1: ("-", "SYN_CONFIG"), 2: ("+", "SYN_MT_REPORT"),
         3: (">", "SYN_DROPPED")}  # fmt: skip
_TAILS = {"-": "-" * 12, "+": "+" * 12, ">": "<" * 12}


def format_evtest(events: list[KeyEvent], name: str = "Simulated Reader") -> str:
    """The capture ``evtest`` prints for ``events`` from a USB keyboard (evtest.c's
    formats): its header, then before every key its MSC_SCAN line in hexadecimal."""
    lines = [
        "Input driver version is 1.0.1",
        "Input device ID: bus 0x3 vendor 0x801 product 0x2 version 0x110",
        f'Input device name: "{name}"',
        "Supported events:",
        "  Event type 0 (EV_SYN)",
        "  Event type 1 (EV_KEY)",
        *(f"    Event code {code} ({KEYS[code][0]})" for code in sorted(KEYS)),
        "  Event type 4 (EV_MSC)",
        "    Event code 4 (MSC_SCAN)",
        "Properties:",
        "Testing ... (interrupt to exit)",
    ]
    for event in events:
        stamp = f"Event: time {event.time:.6f}, "
        if event.type == EV_SYN:
            mark, syn = _SYNS.get(event.code, ("-", "?"))
            lines.append(f"{stamp}{mark * 14} {syn} {_TAILS[mark]}")
            continue
        key, usage = KEYS.get(event.code, ("?", 0))
        if event.type == EV_KEY and usage:
            scan = f"value {0x70000 + usage:02x}"
            lines.append(f"{stamp}type {EV_MSC} (EV_MSC), code {MSC_SCAN} (MSC_SCAN), {scan}")
        kind = "EV_KEY" if event.type == EV_KEY else "?"
        lines.append(
            f"{stamp}type {event.type} ({kind}), code {event.code} ({key}), value {event.value}"
        )
    return "\n".join(lines) + "\n"
