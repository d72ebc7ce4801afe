"""A simulated keyboard-wedge reader: text typed as key events, and those events
written in ``evtest``'s text format. For the demo's reader and for tests; it is the
inverse of ``keys.Keyboard`` and ``evtest.parse_evtest``.
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


def format_evtest(events: list[KeyEvent], name: str = "Simulated Reader") -> str:
    """The capture ``evtest`` would have printed for ``events``."""
    lines = [
        "Input driver version is 1.0.1",
        f'Input device name: "{name}"',
        "Testing ... (interrupt to exit)",
    ]
    for event in events:
        stamp = f"Event: time {event.time:.6f}, "
        if event.type == EV_SYN:
            names = {0: "SYN_REPORT", 3: "SYN_DROPPED"}
            mark = ">>>>>>>>>>>>>>" if event.code == 3 else "--------------"
            lines.append(f"{stamp}{mark} {names.get(event.code, 'SYN_CONFIG')} {mark}")
        else:
            lines.append(
                f"{stamp}type {event.type} (EV_KEY), code {event.code} (KEY_{event.code}), "
                f"value {event.value}"
            )
    return "\n".join(lines) + "\n"
