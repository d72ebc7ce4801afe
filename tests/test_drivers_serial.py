"""The serial reader over real pseudo-terminals: framing, unplug, replug, health."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.config import ReaderConfig
from drivers.lifecycle import ReaderState
from drivers.scan import Scan
from drivers.serial_reader import SerialReader

A = "9900835840532866"
B = "9900568732746027"
pytestmark = pytest.mark.timeout(30)


class Pty:
    """A pseudo-terminal whose slave is reachable through a symlink we control."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            os.close(fd)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    limit = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < limit, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyREADER"


@pytest.fixture
def scans() -> queue.Queue[Scan]:
    return queue.Queue()


@pytest.fixture
def reader(link: Path, scans: queue.Queue[Scan]) -> Iterator[SerialReader]:
    states: list[ReaderState] = []
    config = ReaderConfig(kind="serial", path=str(link), reopen_ms=20, signon_ms=2000)
    made = SerialReader(config, scans.put, on_state=lambda path, state: states.append(state))
    made.states = states  # type: ignore[attr-defined]
    yield made
    made.stop()


def test_swipes_over_a_pty(link: Path, reader: SerialReader, scans: queue.Queue[Scan]) -> None:
    pty = Pty(link)
    try:
        reader.start()
        wait_for(lambda: reader.health().connected)
        pty.write(b"21088817A01\r\n")
        pty.write(f"%B{A}^ONE/A^3012?;{A}=3012?\r".encode())
        assert scans.get(timeout=5).to_json() == {"kind": "member", "card": A, "source": "track2"}
        pty.write(f";{B}".encode())
        pty.write(b"=3012?")  # no terminator: silence ends the swipe
        assert scans.get(timeout=5).card == B
        pty.write(b"%E?;E?\r")
        assert scans.get(timeout=5).error == "unreadable"
        health = reader.health()
        assert health.scans == 3 and health.errors == 0 and health.last_scan_at is not None
        assert health.unreadable == 1
        assert scans.empty()
    finally:
        reader.stop()
        pty.unplug()


def test_unplug_and_replug_at_the_configured_path(
    link: Path, reader: SerialReader, scans: queue.Queue[Scan]
) -> None:
    first = Pty(link)
    reader.start()
    wait_for(lambda: reader.health().connected)
    first.write(f";{A}=3012?\r".encode())
    assert scans.get(timeout=5).card == A
    first.write(f";{B}=30".encode())  # half a swipe, then the cable is pulled
    time.sleep(0.01)
    first.unplug()
    wait_for(lambda: reader.health().state is ReaderState.LOST)
    assert reader.health().errors == 1
    second = Pty(link)
    try:
        wait_for(lambda: reader.health().connected)
        second.write(f";{B}=3012?\r".encode())
        assert scans.get(timeout=5).card == B
        assert scans.empty()
        states = reader.states  # type: ignore[attr-defined]
        assert states[:3] == [ReaderState.OPEN, ReaderState.LOST, ReaderState.OPEN]
    finally:
        reader.stop()
        second.unplug()
    assert reader.health().state is ReaderState.CLOSED


def test_absent_path_is_retried_until_it_appears(
    link: Path, reader: SerialReader, scans: queue.Queue[Scan]
) -> None:
    reader.start()
    time.sleep(0.1)
    assert reader.health().state is ReaderState.ABSENT
    pty = Pty(link)
    try:
        wait_for(lambda: reader.health().connected)
        pty.write(f"{A}\r".encode())
        assert scans.get(timeout=5).source == "qr"
    finally:
        reader.stop()
        pty.unplug()


def test_exclusive_open_keeps_a_second_reader_out(link: Path, scans: queue.Queue[Scan]) -> None:
    pty = Pty(link)
    config = ReaderConfig(kind="serial", path=str(link), reopen_ms=20)
    first = SerialReader(config, scans.put)
    second = SerialReader(config, scans.put)
    try:
        first.start()
        wait_for(lambda: first.health().connected)
        second.start()
        time.sleep(0.1)
        assert not second.health().connected
    finally:
        first.stop()
        second.stop()
        pty.unplug()


def test_a_failing_consumer_does_not_kill_the_reader(link: Path) -> None:
    delivered: list[Scan] = []

    def consumer(scan: Scan) -> None:
        delivered.append(scan)
        if len(delivered) == 1:
            raise RuntimeError("consumer bug")

    opened: list[ReaderState] = []
    pty = Pty(link)
    config = ReaderConfig(kind="serial", path=str(link), reopen_ms=20, signon_ms=0)
    reader = SerialReader(config, consumer, on_state=lambda _path, state: opened.append(state))
    try:
        reader.start()
        wait_for(lambda: reader.health().connected)
        pty.write(f"{A}\r".encode())
        # The failure closes the port and the supervisor opens it again: wait for that
        # second open (still "connected" just after the consumer raised is not it).
        wait_for(lambda: opened.count(ReaderState.OPEN) == 2)
        assert len(delivered) == 1
        pty.write(f"{B}\r".encode())
        wait_for(lambda: len(delivered) == 2)
        assert reader.health().errors == 1
    finally:
        reader.stop()
        pty.unplug()


def test_settings_from_config_are_used(link: Path, scans: queue.Queue[Scan]) -> None:
    pty = Pty(link)
    config = ReaderConfig(
        kind="serial", path=str(link), baudrate=19200, bytesize=7, parity="E", prefix="##",
        suffix="!!", signon_ms=0,
    )  # fmt: skip
    reader = SerialReader(config, scans.put)
    try:
        reader.start()
        wait_for(lambda: reader.health().connected)
        pty.write(f"##;{A}=3012?!!".encode())
        assert scans.get(timeout=5).card == A
    finally:
        reader.stop()
        pty.unplug()


def test_noise_right_after_open_is_reported_and_counted(
    link: Path, reader: SerialReader, scans: queue.Queue[Scan]
) -> None:
    """A reader at the wrong baud rate sends noise: it must show, not vanish as a
    'sign-on' (issue 13)."""
    pty = Pty(link)
    try:
        reader.start()
        wait_for(lambda: reader.health().connected)
        pty.write(b"\x80\xfe\x9c\xe6\xff\r")
        scan = scans.get(timeout=5)
        assert scan.error == "unreadable" and "baud" in (scan.message or "")
        pty.write(f"21088817A01\r;{A}=3012?\r".encode())
        assert scans.get(timeout=5).card == A
        assert reader.health().unreadable == 1 and reader.health().to_json()["unreadable"] == 1
    finally:
        reader.stop()
        pty.unplug()
