"""The HID reader against a fake ``InputDevice`` fed from evtest captures."""

from __future__ import annotations

import errno
import os
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.config import ReaderConfig
from drivers.evtest import parse_evtest
from drivers.hid_reader import HidReader, InputDevice
from drivers.keys import EV_SYN, SYN_DROPPED, SYN_REPORT, KeyEvent
from drivers.lifecycle import ReaderState
from drivers.scan import Scan

CAPTURES = Path(__file__).resolve().parent / "fixtures" / "evtest"
pytestmark = pytest.mark.timeout(30)


@dataclass
class RawEvent:
    type: int
    code: int
    value: int
    sec: int
    usec: int


class FakeInputDevice:
    """The part of ``evdev.InputDevice`` the reader uses, replaying recorded events
    one report at a time; ``fail_after`` events it raises ENODEV like an unplug."""

    def __init__(self, events: list[KeyEvent], fail_after: int | None = None) -> None:
        self._events = deque(events)
        self._fail_after = fail_after
        self._delivered = 0
        self._read_fd, self._write_fd = os.pipe()
        os.write(self._write_fd, b"!")
        self.grabbed = False
        self.grabs = 0
        self.closed = False
        self.active_keys_calls = 0

    def fileno(self) -> int:
        return self._read_fd

    def read(self) -> Iterator[RawEvent]:
        batch: list[RawEvent] = []
        while self._events:
            if self._fail_after is not None and self._delivered >= self._fail_after:
                raise OSError(errno.ENODEV, "No such device")
            event = self._events.popleft()
            self._delivered += 1
            seconds = int(event.time)
            usec = round((event.time - seconds) * 1_000_000)
            batch.append(RawEvent(event.type, event.code, event.value, seconds, usec))
            if event.type == EV_SYN and event.code == SYN_REPORT:
                break
        if not self._events:
            os.read(self._read_fd, 1)
        if not batch:
            raise BlockingIOError
        return iter(batch)

    def grab(self) -> None:
        if self.grabbed:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True
        self.grabs += 1

    def ungrab(self) -> None:
        self.grabbed = False

    def close(self) -> None:
        if not self.closed:
            os.close(self._read_fd)
            os.close(self._write_fd)
        self.closed = True

    def active_keys(self) -> list[int]:
        self.active_keys_calls += 1
        return []


def capture(name: str) -> list[KeyEvent]:
    return parse_evtest((CAPTURES / name).read_text())


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    limit = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < limit, "condition not met in time"
        time.sleep(0.005)


class Devices:
    """Hands out prepared fakes in order, then behaves as an absent node."""

    def __init__(self, *devices: FakeInputDevice) -> None:
        self.pending = deque(devices)
        self.opened: list[FakeInputDevice] = []

    def __call__(self, config: ReaderConfig) -> InputDevice:
        if not self.pending:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", config.path)
        device = self.pending.popleft()
        self.opened.append(device)
        return device

    def close_all(self) -> None:
        for device in [*self.opened, *self.pending]:
            device.close()


CONFIG = ReaderConfig(kind="hid", path="/dev/input/by-id/usb-Fake_Reader-event-kbd", reopen_ms=20)


def run_reader(devices: Devices) -> tuple[HidReader, queue.Queue[Scan]]:
    scans: queue.Queue[Scan] = queue.Queue()
    reader = HidReader(CONFIG, scans.put, opener=devices)
    reader.start()
    return reader, scans


def test_reads_a_swipe_grabbed_and_releases_the_grab() -> None:
    device = FakeInputDevice(capture("tracks-1-and-2.txt"))
    devices = Devices(device)
    reader, scans = run_reader(devices)
    try:
        scan = scans.get(timeout=5)
        assert scan.card == "9900568732746027"
        assert reader.health().state is ReaderState.GRABBED
        assert device.grabbed
    finally:
        reader.stop()
        devices.close_all()
    assert not device.grabbed
    assert device.closed


def test_enodev_mid_swipe_drops_it_counts_it_and_reconnects() -> None:
    swipe = capture("tracks-1-and-2.txt")
    unplugged = FakeInputDevice(swipe, fail_after=len(swipe) // 2)
    replugged = FakeInputDevice(capture("qr-code.txt"))
    devices = Devices(unplugged, replugged)
    reader, scans = run_reader(devices)
    try:
        scan = scans.get(timeout=5)
        assert scan.to_json() == {"kind": "member", "card": "9900835840532866", "source": "qr"}
        assert reader.health().errors == 1
        assert not unplugged.grabbed and unplugged.closed
        time.sleep(0.1)
        assert scans.empty()
    finally:
        reader.stop()
        devices.close_all()


def test_syn_dropped_reports_a_read_error_and_rereads_modifiers() -> None:
    swipe = capture("track2-only.txt")
    middle = len(swipe) // 2
    dropped = KeyEvent(swipe[middle].time, EV_SYN, SYN_DROPPED, 0)
    device = FakeInputDevice([*swipe[:middle], dropped, *swipe[middle:]])
    devices = Devices(device)
    reader, scans = run_reader(devices)
    try:
        assert scans.get(timeout=5).error == "unreadable"
        wait_for(lambda: reader.health().errors == 1)
        assert device.active_keys_calls >= 2
        time.sleep(0.15)
        leftovers = [scans.get_nowait().kind for _ in range(scans.qsize())]
        assert "member" not in leftovers
    finally:
        reader.stop()
        devices.close_all()


def test_busy_device_is_retried() -> None:
    busy = FakeInputDevice([])
    busy.grabbed = True
    good = FakeInputDevice(capture("track2-only.txt"))
    devices = Devices(busy, good)
    reader, scans = run_reader(devices)
    try:
        assert scans.get(timeout=5).card == "9900835840532866"
        assert reader.health().errors == 1
    finally:
        reader.stop()
        devices.close_all()
