"""The text that the ``evtest`` tool prints, parsed back into key events.

Format (evtest.c): header lines, then one line per event::

    Event: time 1763000000.003000, type 1 (EV_KEY), code 42 (KEY_LEFTSHIFT), value 1
    Event: time 1763000000.003000, -------------- SYN_REPORT ------------
    Event: time 1763000000.003000, >>>>>>>>>>>>>> SYN_DROPPED <<<<<<<<<<<<

Header lines are ignored. An ``Event:`` line in neither form is an error naming its
line number, so a truncated or hand-edited capture is refused rather than half-read.
"""

from __future__ import annotations

import re

from drivers.errors import DriverError
from drivers.keys import EV_SYN, KeyEvent

_TIME = r"Event: time (?P<time>\d{1,12}(?:\.\d{1,9})?), "
_EVENT = re.compile(
    _TIME + r"type (?P<type>\d{1,5}) \([^)]*\), code (?P<code>\d{1,5}) \([^)]*\), "
    r"value (?P<value>-?\d{1,10})\s*$"
)
_SYN = re.compile(_TIME + r"[-+<>]+ (?P<name>SYN_[A-Z_]+) [-+<>]+\s*$")
_SYN_CODES = {"SYN_REPORT": 0, "SYN_CONFIG": 1, "SYN_MT_REPORT": 2, "SYN_DROPPED": 3}
_HEADER = "Input driver version"


def parse_evtest(text: str) -> list[KeyEvent]:
    """Parse a whole capture. Raises ``DriverError("invalid_capture", ..., 2)``."""
    events: list[KeyEvent] = []
    seen_header = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("Event:"):
            seen_header = seen_header or line.startswith(_HEADER)
            continue
        match = _EVENT.match(line)
        if match:
            events.append(
                KeyEvent(
                    float(match["time"]),
                    int(match["type"]),
                    int(match["code"]),
                    int(match["value"]),
                )
            )
            continue
        syn = _SYN.match(line)
        if syn is None or syn["name"] not in _SYN_CODES:
            raise DriverError("invalid_capture", f"line {number}: not an evtest event line", 2)
        events.append(KeyEvent(float(syn["time"]), EV_SYN, _SYN_CODES[syn["name"]], 0))
    if not events and not seen_header:
        raise DriverError("invalid_capture", "not an evtest capture: no header and no events", 2)
    return events
