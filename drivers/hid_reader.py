"""Keyboard-wedge (USB HID) readers, read and grabbed with python-evdev.

The reader is opened by its stable ``/dev/input/by-id/...-event-kbd`` path and
grabbed (``EVIOCGRAB``) so that a swipe does not also type into the cashier's
window; the grab is released in ``finally`` whatever happens. Unplugging raises
``OSError(ENODEV)`` from ``read``: the partial swipe is dropped, the error counted,
and the path reopened every ``reopen_ms`` until the reader comes back.

The shell is written against ``InputDevice``, the small part of
``evdev.InputDevice`` it needs, so that tests drive it with a fake fed from
``evtest`` captures. evdev events become our own ``KeyEvent`` at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from drivers.config import ReaderConfig
from drivers.keys import KeyEvent
from drivers.reader_base import DeviceReader, ScanConsumer


class InputEvent(Protocol):
    type: int
    code: int
    value: int
    sec: int
    usec: int


class InputDevice(Protocol):
    def read(self) -> Iterable[InputEvent]: ...

    def fileno(self) -> int: ...

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def close(self) -> None: ...

    def active_keys(self) -> list[int]: ...


def open_evdev(config: ReaderConfig) -> InputDevice:
    import evdev

    device: InputDevice = evdev.InputDevice(config.path)
    return device


def key_event(event: InputEvent) -> KeyEvent:
    return KeyEvent(event.sec + event.usec / 1_000_000, event.type, event.code, event.value)


class HidReader(DeviceReader[InputDevice]):
    """A keyboard-wedge reader, grabbed unless ``grab = false``."""

    def __init__(
        self,
        config: ReaderConfig,
        on_scan: ScanConsumer,
        *,
        opener: Callable[[ReaderConfig], InputDevice] = open_evdev,
        **options: Any,
    ) -> None:
        super().__init__(config, on_scan, opener=opener, **options)

    def _hold(self, device: InputDevice) -> None:
        if not self.config.grab:
            self._pump(device)
            return
        device.grab()
        self._lifecycle.fire("grab")
        try:
            self._decoder.keys_held(device.active_keys())
            self._pump(device)
        finally:
            with contextlib.suppress(OSError):
                device.ungrab()

    def _pump(self, device: InputDevice) -> None:
        fd = device.fileno()
        while not self.stopping:
            if not self._wait_readable(fd, self._timeout()):
                self._tick()
                continue
            try:
                events = [key_event(event) for event in device.read()]
            except BlockingIOError:
                continue
            scans = self._decoder.feed_events(events, self._clock())
            if any(event.dropped for event in events):
                self._count_error()
                self._decoder.keys_held(device.active_keys())
            self._deliver(scans)
