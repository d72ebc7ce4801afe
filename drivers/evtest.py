"""The text that the ``evtest`` tool prints, parsed back into key events.

The grammar is evtest.c's own printf formats (freedesktop's evtest, from Vojtech
Pavlik's 2005 version to today's; docs/readers.md, "evtest captures"). One line per
event::

    Event: time 1763000000.003000, type 4 (EV_MSC), code 4 (MSC_SCAN), value 700e1
    Event: time 1763000000.003000, type 1 (EV_KEY), code 42 (KEY_LEFTSHIFT), value 1
    Event: time 1763000000.003000, -------------- SYN_REPORT ------------

- ``time`` is ``%ld.%06ld``: seconds, a dot, exactly six digits of microseconds.
- ``value`` is ``%02x`` (lower-case hexadecimal, at least two digits) for
  ``EV_MSC``/``MSC_SCAN`` and ``MSC_RAW``, ``%d`` (decimal) for everything else.
- The names in brackets are evtest's tables: ``EV_KEY``/``KEY_A`` today, ``Key``/``A``
  in old versions, ``?`` for a code it has no name for. They are not checked: the
  numbers are what the kernel sent.
- A sync line is ``-------------- NAME ------------``, ``++++++++++++++ NAME
  ++++++++++++`` (SYN_MT_REPORT) or ``>>>>>>>>>>>>>> NAME <<<<<<<<<<<<`` (SYN_DROPPED).
  NAME is ``SYN_REPORT`` today, ``EV_SYN`` in versions that looked sync codes up in
  the event-type table (so SYN_CONFIG printed as ``EV_KEY``, SYN_MT_REPORT as
  ``EV_REL``, SYN_DROPPED as ``EV_ABS``), ``Report Sync``/``Config Sync`` in the oldest.

Before the first event come the header lines evtest prints (device, supported
events, properties, ``Testing ... (interrupt to exit)``, the grab warning) and what
it writes to the terminal when it is run without a device (the device list and the
question). After the events: evtest's read-error lines and the terminal's ``^C``.
Blank lines and trailing white space (a terminal copy) are allowed anywhere. Any
other line is refused with ``invalid_capture`` naming its number, so a truncated,
hand-edited or foreign file is never half-read.
"""

from __future__ import annotations

import re

from drivers.errors import DriverError
from drivers.keys import EV_SYN, KeyEvent

EV_MSC = 4
_HEX_CODES = frozenset({3, 4})  # MSC_RAW, MSC_SCAN: printed with %02x
_MAX_TYPE, _MAX_CODE = 0x1F, 0x2FF  # EV_MAX, KEY_MAX

_TIME = r"Event: time (?P<time>\d{1,19}\.\d{6}), "
_NAME = r"\((?P<{}>[^()]*)\)"
_EVENT = re.compile(
    _TIME
    + r"type (?P<type>\d{1,5}) "
    + _NAME.format("type_name")
    + r", code (?P<code>\d{1,5}) "
    + _NAME.format("code_name")
    + r", value (?P<value>-?[0-9a-f]{1,10})$"
)
_SYN = re.compile(
    _TIME + r"(?:(?P<dash>-{14})|(?P<plus>\+{14})|(?P<drop>>{14})) (?P<name>[^-+<>]+) "
    r"(?P<tail>-{12}|\+{12}|<{12})$"
)
_DASH_SYNS = {
    "SYN_REPORT": 0,
    "EV_SYN": 0,
    "Report Sync": 0,
    "SYN_CONFIG": 1,
    "EV_KEY": 1,
    "Config Sync": 1,
    "SYN_DROPPED": 3,
    "EV_ABS": 3,
    "?": 15,
}
_PLUS_SYNS = {"SYN_MT_REPORT": 2, "EV_REL": 2}
_DROP_SYNS = {"SYN_DROPPED": 3}

_HEADER = re.compile(
    "|".join(
        (
            r"Input driver version is \d+\.\d+\.\d+",
            r"Input device ID: bus 0x[0-9a-f]+ vendor 0x[0-9a-f]+ product 0x[0-9a-f]+"
            r" version 0x[0-9a-f]+",
            r'Input device name: ".*"',
            r"Supported events:",
            r"  Event type \d+ \([^()]*\)",
            r"    Event code \d+ \([^()]*\)(?: state \d+)?",
            r"      (?:Value|Min|Max|Fuzz|Flat|Resolution) *-?\d+",
            r"Key repeat handling:",
            # Some versions print the repeat settings under "Properties:" with these words.
            r"  (?:Repeat|Property) type \d+ \([^()]*\)",
            r"    (?:Repeat|Property) code \d+ \([^()]*\)",
            r"Properties:",
            r"  Property type \d+ \([^()]*\)",
            r"Testing \.\.\. \(interrupt to exit\)",
            # The warning evtest prints when another process holds a grab.
            r"\*{47}",
            r"  This device is grabbed by another process\.",
            r"  No events are available to evtest while the",
            r"  other grab is active\.",
            r"  In most cases, this is caused by an X driver,",
            r"  try VT-switching and re-run evtest again\.",
            r"  Run the following command to see processes with",
            r"  an open fd on this device",
            r' "fuser -v [^"]*"',
            # On the terminal (stderr) when run without a device argument.
            r"No device specified, trying to scan all of /dev/input/event\*",
            r"Not running as root, no devices may be available\.",
            r"Available devices:",
            r"/dev/input/event\d+:\s.*",
            r"Select the device event number \[0-\d+\]: ?\d*",
        )
    )
)
# After the events: a lost device, and the terminal echoing the interrupt.
_TRAILER = re.compile(
    r"expected \d+ bytes, got -?\d+|evtest: error reading(?:: .*)?|\^C",
)
_HEADER_MARK = ("Input driver version is", "Testing ... (interrupt to exit)")


def _refuse(number: int, problem: str) -> DriverError:
    return DriverError("invalid_capture", f"line {number}: {problem}", 2)


def parse_event_line(line: str, number: int) -> KeyEvent:
    """One ``Event:`` line (without its line end) as evtest prints it."""
    match = _EVENT.match(line)
    if match:
        kind, code, text = int(match["type"]), int(match["code"]), match["value"]
        if kind > _MAX_TYPE or code > _MAX_CODE or kind == EV_SYN:
            raise _refuse(number, "type or code out of evtest's range")
        if kind == EV_MSC and code in _HEX_CODES:
            if not re.fullmatch(r"[0-9a-f]{2}|[1-9a-f][0-9a-f]{2,7}", text):
                raise _refuse(number, "a MSC_SCAN/MSC_RAW value is 2 to 8 hex digits")
            value = int(text, 16)
        else:
            if not re.fullmatch(r"-?(?:0|[1-9]\d{0,9})", text) or not (
                -(2**31) <= int(text) < 2**31
            ):
                raise _refuse(number, "the value of this event type is a decimal integer")
            value = int(text)
        return KeyEvent(float(match["time"]), kind, code, value)
    syn = _SYN.match(line)
    if syn is None:
        raise _refuse(number, "not an evtest event line")
    name, tail = syn["name"], syn["tail"]
    if syn["dash"] and tail[0] == "-":
        table = _DASH_SYNS
    elif syn["plus"] and tail[0] == "+":
        table = _PLUS_SYNS
    elif syn["drop"] and tail[0] == "<":
        table = _DROP_SYNS
    else:
        raise _refuse(number, "a sync line's markers do not match")
    if name not in table:
        raise _refuse(number, f"unknown sync name {name!r}")
    return KeyEvent(float(syn["time"]), EV_SYN, table[name], 0)


def parse_evtest(text: str) -> list[KeyEvent]:
    """Parse a whole capture. Raises ``DriverError("invalid_capture", ..., 2)``."""
    events: list[KeyEvent] = []
    seen_header = False
    trailer = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("Event:"):
            if trailer:
                raise _refuse(number, "an event after evtest stopped reading")
            events.append(parse_event_line(line, number))
        elif _TRAILER.fullmatch(line):
            trailer = True
        elif not events and not trailer and _HEADER.fullmatch(line):
            seen_header = seen_header or line.startswith(_HEADER_MARK)
        elif "Event: time" in line:
            raise _refuse(
                number,
                "text before 'Event:' (keys echoed by the terminal? redirect evtest's "
                "output to a file, or run it with --grab)",
            )
        else:
            where = "after the events" if events else "in the header"
            raise _refuse(number, f"not a line evtest prints {where}")
    if not events and not seen_header:
        raise DriverError("invalid_capture", "not an evtest capture: no header and no events", 2)
    return events
