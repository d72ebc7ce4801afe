# ruff: noqa: UP031 - the lines are built with evtest.c's own printf formats
"""The evtest parser against evtest.c's own printf formats (docs/readers.md, "evtest
captures"): whatever those formats print is accepted, event for event; anything else
is ``invalid_capture`` naming the line."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.errors import DriverError
from drivers.evtest import parse_evtest
from drivers.keys import EV_KEY, EV_SYN, SYN_DROPPED, SYN_REPORT, KeyEvent
from tests.wedge_typing import KEYS

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "evtest"

NAMES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).filter(
    lambda name: "(" not in name and ")" not in name
)
NUMBER = st.integers(0, 2**16 - 1)

# Header lines evtest.c prints (every version), with their variable parts drawn.
HEADERS = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)).map(
        lambda v: "Input driver version is %d.%d.%d" % v
    ),
    st.tuples(NUMBER, NUMBER, NUMBER, NUMBER).map(
        lambda v: "Input device ID: bus 0x%x vendor 0x%x product 0x%x version 0x%x" % v
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
        lambda name: f'Input device name: "{name}"'
    ),
    st.just("Supported events:"),
    st.tuples(st.integers(0, 31), NAMES).map(lambda v: "  Event type %d (%s)" % v),
    st.tuples(st.integers(0, 767), NAMES).map(lambda v: "    Event code %d (%s)" % v),
    st.tuples(st.integers(0, 767), NAMES, st.integers(0, 1)).map(
        lambda v: "    Event code %d (%s) state %d" % v
    ),
    st.tuples(
        st.sampled_from(["Value", "Min  ", "Max  ", "Fuzz ", "Flat ", "Resolution"]),
        st.integers(-(2**31), 2**31 - 1),
    ).map(lambda v: "      %s %6d" % v),
    st.just("Key repeat handling:"),
    st.just("Properties:"),
    st.tuples(st.integers(0, 31), NAMES).map(lambda v: "  Property type %d (%s)" % v),
    st.just("Available devices:"),
    st.tuples(st.integers(0, 99), NAMES.filter(str.strip)).map(
        lambda v: "/dev/input/event%d:\t%s" % v
    ),
    st.integers(0, 99).map(lambda n: f"Select the device event number [0-{n}]: {n}"),
    st.just(""),
)
TESTING = "Testing ... (interrupt to exit)"


@st.composite
def event_lines(draw: st.DrawFn) -> tuple[str, KeyEvent]:
    """One line as evtest prints it and the event it stands for."""
    seconds = draw(st.integers(0, 2**40))
    micros = draw(st.integers(0, 999_999))
    stamp = "Event: time %d.%06d, " % (seconds, micros)
    at = float("%d.%06d" % (seconds, micros))
    kind = draw(st.sampled_from(["key", "scan", "other", "syn"]))
    if kind == "syn":
        code, marks, name = draw(
            st.sampled_from(
                [
                    (0, ("-" * 14, "-" * 12), "SYN_REPORT"),
                    (0, ("-" * 14, "-" * 12), "EV_SYN"),
                    (0, ("-" * 14, "-" * 12), "Report Sync"),
                    (1, ("-" * 14, "-" * 12), "SYN_CONFIG"),
                    (1, ("-" * 14, "-" * 12), "Config Sync"),
                    (2, ("+" * 14, "+" * 12), "SYN_MT_REPORT"),
                    (2, ("+" * 14, "+" * 12), "EV_REL"),
                    (3, (">" * 14, "<" * 12), "SYN_DROPPED"),
                    (3, ("-" * 14, "-" * 12), "EV_ABS"),
                ]
            )
        )
        return f"{stamp}{marks[0]} {name} {marks[1]}", KeyEvent(at, EV_SYN, code, 0)
    type_name, code_name = draw(NAMES), draw(NAMES)
    if kind == "scan":
        code = draw(st.sampled_from([3, 4]))  # MSC_RAW, MSC_SCAN: printf("%02x")
        value = draw(st.integers(0, 2**32 - 1))
        line = f"{stamp}type 4 ({type_name}), code {code} ({code_name}), value {value:02x}"
        return line, KeyEvent(at, 4, code, value)
    kind_number = EV_KEY if kind == "key" else draw(st.integers(1, 31))
    code = draw(st.integers(0, 767))
    if kind_number == 4:
        code = draw(st.integers(0, 767).filter(lambda c: c not in (3, 4)))
    value = draw(st.integers(-(2**31), 2**31 - 1))
    line = f"{stamp}type {kind_number} ({type_name}), code {code} ({code_name}), value {value}"
    return line, KeyEvent(at, kind_number, code, value)


@st.composite
def captures(draw: st.DrawFn) -> tuple[list[str], list[KeyEvent]]:
    header = ["Input driver version is 1.0.1", *draw(st.lists(HEADERS, max_size=8)), TESTING]
    body = draw(st.lists(event_lines(), max_size=30))
    trailer = draw(st.sampled_from([[], ["^C"], ["expected 24 bytes, got -1", ""]]))
    return header + [line for line, _ in body] + trailer, [event for _, event in body]


@FAST
@given(captures(), st.sampled_from(["\n", "\r\n"]), st.sampled_from(["", " ", "\t"]))
def test_every_documented_line_is_accepted(
    capture: tuple[list[str], list[KeyEvent]], newline: str, trailing: str
) -> None:
    lines, events = capture
    text = newline.join(line + trailing for line in lines) + newline
    assert parse_evtest(text) == events


def _mutations(line: str) -> list[str]:
    """Ways to break an event line that evtest could never have printed."""
    broken = [
        line.replace("Event: time", "Event: tme", 1),
        re.sub(r"\.(\d{6}),", lambda m: "." + m.group(1)[:5] + ",", line, count=1),
        line.replace("Event:", "Event:x", 1),
        line + " extra",
    ]
    if ", value " in line:
        broken += [line + "g", line.replace(", value ", ", value  ", 1)]
        if "(EV_MSC)" in line or "type 4 " in line:
            broken.append(re.sub(r"value (\w+)$", lambda m: f"value {m.group(1).upper()}G", line))
        else:
            broken.append(re.sub(r"value (-?\d+)$", r"value \g<1>a", line))
    else:
        marks = line.index(", ") + 2
        broken += [line[:-1], line[:marks] + "=" + line[marks + 1 :]]
    return [candidate for candidate in broken if candidate != line]


@FAST
@given(captures(), st.data())
def test_anything_else_is_refused_naming_its_line(
    capture: tuple[list[str], list[KeyEvent]], data: st.DataObject
) -> None:
    lines, events = capture
    where = data.draw(st.integers(0, len(lines)))
    if events and data.draw(st.booleans()):
        first_event = next(i for i, line in enumerate(lines) if line.startswith("Event:"))
        where = data.draw(st.integers(first_event, first_event + len(events) - 1))
        bad = data.draw(st.sampled_from(_mutations(lines[where])))
        lines = [*lines[:where], bad, *lines[where + 1 :]]
    else:
        junk = data.draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
        lines = [*lines[:where], "@" + junk, *lines[where:]]
    with pytest.raises(DriverError) as refused:
        parse_evtest("\n".join(lines) + "\n")
    assert refused.value.code == "invalid_capture" and refused.value.exit_status == 2
    assert refused.value.message.startswith(f"line {where + 1}:")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("Event: time 1.000000, -------------- SYN_REPORT ------------", SYN_REPORT),
        ("Event: time 1.000000, -------------- EV_SYN ------------", SYN_REPORT),
        ("Event: time 1.000000, -------------- Report Sync ------------", SYN_REPORT),
        ("Event: time 1.000000, >>>>>>>>>>>>>> SYN_DROPPED <<<<<<<<<<<<", SYN_DROPPED),
        ("Event: time 1.000000, -------------- EV_ABS ------------", SYN_DROPPED),
    ],
)
def test_every_separator_form(line: str, code: int) -> None:
    assert parse_evtest(line + "\n") == [KeyEvent(1.0, EV_SYN, code, 0)]


def test_hex_scan_values_and_old_names() -> None:
    text = (
        "Event: time 1414255176.375785, type 4 (EV_MSC), code 4 (MSC_SCAN), value 700e1\n"
        "Event: time 1414255176.375785, type 1 (Key), code 42 (LeftShift), value 1\n"
        "Event: time 1414255176.375785, type 4 (Misc), code 4 (ScanCode), value 04\n"
    )
    assert [(e.type, e.code, e.value) for e in parse_evtest(text)] == [
        (4, 4, 0x700E1),
        (1, 42, 1),
        (4, 4, 4),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Event: time 1.000000, type 4 (EV_MSC), code 4 (MSC_SCAN), value 4",  # %02x: "04"
        "Event: time 1.000000, type 4 (EV_MSC), code 4 (MSC_SCAN), value 700E1",  # lower case
        "Event: time 1.000000, type 1 (EV_KEY), code 42 (KEY_LEFTSHIFT), value 1e",
        "Event: time 1.000000, type 1 (EV_KEY), code 42 (KEY_LEFTSHIFT), value 01",
        "Event: time 1.0, type 1 (EV_KEY), code 42 (KEY_LEFTSHIFT), value 1",  # %06ld
        "Event: time 1.000000, type 0 (EV_SYN), code 0 (SYN_REPORT), value 0",
        "Event: time 1.000000, ++++++++++++++ SYN_REPORT ------------",
        "aEvent: time 1.000000, -------------- SYN_REPORT ------------",  # terminal echo
    ],
)
def test_near_misses_are_refused(line: str) -> None:
    with pytest.raises(DriverError) as refused:
        parse_evtest(f"Input driver version is 1.0.1\n{TESTING}\n{line}\n")
    assert refused.value.message.startswith("line 3:")


@pytest.mark.parametrize("capture", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.name)
def test_fixtures_are_in_evtest_true_format(capture: Path) -> None:
    """Every MSC_SCAN line is 0x70000 + the USB HID usage of the key that follows."""
    lines = capture.read_text().splitlines()
    scans = 0
    for line, following in itertools.pairwise(lines):
        if line.startswith("Event:") and "(MSC_SCAN)" in line:
            code = int(re.search(r"code (\d+) \(", following).group(1))  # type: ignore[union-attr]
            assert line.endswith(f"value {0x70000 + KEYS[code][1]:x}")
            scans += 1
    assert scans > 0
    parse_evtest("\n".join(lines))


def test_a_device_name_that_is_not_utf8_is_still_a_capture() -> None:
    from drivers.replay import load_events

    data = (
        b'Input driver version is 1.0.1\nInput device name: "Lecteur \xe9"\n'
        b"Testing ... (interrupt to exit)\n"
        b"Event: time 1.000000, -------------- SYN_REPORT ------------\n"
    )
    assert load_events(data) == [KeyEvent(1.0, EV_SYN, SYN_REPORT, 0)]
    with pytest.raises(DriverError) as refused:
        load_events(b"\xff\xfe\x00binary\n")
    assert refused.value.message.startswith("line 1:")


def test_terminal_echo_is_named() -> None:
    text = f"{TESTING}\n!Event: time 1.000000, -------------- SYN_REPORT ------------\n"
    with pytest.raises(DriverError) as refused:
        parse_evtest(text)
    assert refused.value.message.startswith("line 2: text before 'Event:'")
