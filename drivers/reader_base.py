"""What every reader shell shares: a thread that moves input into a ``ScanDecoder``
and hands the scans to a consumer callback (pyserial's ``threaded`` split: port I/O,
framing, protocol).

The thread waits with ``select`` on the device and on a wake-up pipe, so ``stop()``
returns at once and the next idle deadline is met to the millisecond. A supervisor
loop keeps the reader alive through unplugs and unexpected failures: the node may
disappear and come back, and the reader reopens it without a restart. The daemon
(issue 6) bridges ``on_scan`` into asyncio; the callback runs on the reader thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from drivers.config import ReaderConfig
from drivers.decoder import DecoderSettings, ScanDecoder
from drivers.lifecycle import CONNECTED, Lifecycle, ReaderHealth, ReaderState
from drivers.scan import UNREADABLE, Scan

logger = logging.getLogger(__name__)

ScanConsumer = Callable[[Scan], None]
StateListener = Callable[[str, ReaderState], None]
_LONGEST_WAIT = 1.0


class ReaderThread:
    """Base of the serial, HID and replay readers. Subclasses implement ``_serve``:
    open the device once, pump it until it is lost or the reader stops."""

    def __init__(
        self,
        config: ReaderConfig,
        on_scan: ScanConsumer,
        *,
        settings: DecoderSettings | None = None,
        on_state: StateListener | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._on_scan = on_scan
        self._on_state = on_state
        self._clock = clock
        self._wall_clock = wall_clock
        self._decoder = ScanDecoder(settings or config.decoder_settings(), wall_clock)
        self._lifecycle = Lifecycle(self._state_changed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None
        self._counts_lock = threading.Lock()
        self._scans = 0
        self._errors = 0
        self._unreadable = 0
        self._last_scan_at: float | None = None

    @property
    def reopen_s(self) -> float:
        return self.config.reopen_ms / 1000

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._wake = os.pipe()
        self._thread = threading.Thread(
            target=self._supervise, name=f"reader {self.config.path}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, release the device and close every descriptor opened."""
        self._stop.set()
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"reader {self.config.path} did not stop")
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def health(self) -> ReaderHealth:
        with self._counts_lock:
            return ReaderHealth(
                kind=self.config.kind,
                path=self.config.path,
                state=self._lifecycle.state,
                last_scan_at=self._last_scan_at,
                scans=self._scans,
                errors=self._errors,
                unreadable=self._unreadable,
            )

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _serve(self) -> None:
        raise NotImplementedError

    def _hold(self, device: Any) -> None:
        raise NotImplementedError

    def _supervise(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                except Exception as error:  # noqa: BLE001 - the supervisor keeps readers alive
                    logger.error(
                        "reader %s: unexpected %s; reopening",
                        self.config.path,
                        type(error).__name__,
                    )
                    self._lost()
                    self._wait(self.reopen_s)
        finally:
            self._lifecycle.fire("close")

    def _opened(self) -> None:
        self._lifecycle.fire("open")
        self._decoder.opened(self._clock())

    def _lost(self) -> None:
        """The device failed: count it, drop the partial swipe, mark the reader lost."""
        self._decoder.interrupt()
        self._count_error()
        if self._lifecycle.state in CONNECTED:
            self._lifecycle.fire("lose")

    def _count_error(self) -> None:
        with self._counts_lock:
            self._errors += 1

    def _deliver(self, scans: list[Scan]) -> None:
        for scan in scans:
            with self._counts_lock:
                self._scans += 1
                self._unreadable += scan.error == UNREADABLE
                self._last_scan_at = self._wall_clock()
            self._on_scan(scan)

    def _tick(self) -> None:
        self._deliver(self._decoder.tick(self._clock()))

    def _timeout(self) -> float:
        deadline = self._decoder.deadline()
        if deadline is None:
            return _LONGEST_WAIT
        return min(max(0.0, deadline - self._clock()), _LONGEST_WAIT)

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once when the reader is stopped."""
        self._wait_readable(None, seconds)

    def _wait_readable(self, fd: int | None, timeout: float) -> bool:
        assert self._wake is not None
        watched = [self._wake[0]] if fd is None else [fd, self._wake[0]]
        ready, _, _ = select.select(watched, [], [], timeout)
        return fd is not None and fd in ready and not self._stop.is_set()

    def _state_changed(self, state: ReaderState) -> None:
        logger.info("reader %s: %s", self.config.path, state.value)
        if self._on_state is not None:
            self._on_state(self.config.path, state)


class Closeable(Protocol):
    def close(self) -> None: ...


DeviceT = TypeVar("DeviceT", bound=Closeable)


class DeviceReader(ReaderThread, Generic[DeviceT]):
    """A reader of a device node that can vanish. ``opener`` opens it from the
    configuration (replaceable: a pyserial URL, a test double); ``_hold`` pumps it.
    Any ``OSError`` (pyserial's ``SerialException`` is one) means the device is lost."""

    def __init__(
        self,
        config: ReaderConfig,
        on_scan: ScanConsumer,
        *,
        opener: Callable[[ReaderConfig], DeviceT],
        **options: Any,
    ) -> None:
        super().__init__(config, on_scan, **options)
        self._opener = opener

    def _serve(self) -> None:
        try:
            device = self._opener(self.config)
        except OSError:
            self._wait(self.reopen_s)
            return
        try:
            self._opened()
            self._hold(device)
        except OSError:
            self._lost()
        finally:
            with contextlib.suppress(OSError):
                device.close()
