"""Serial and USB-CDC readers, read with pyserial.

The port is opened with the configured line settings and ``exclusive=True`` (an
advisory ``flock``: a second tillpoints cannot steal the reader's bytes). Reads
never block: the thread ``select``s on the port, then takes what is waiting, so the
decoder's idle deadline drives framing rather than ``read_until``, which returns
partial data without its terminator when a timeout expires (docs/reader-field-notes.md, pyserial).

Unplugging a USB-CDC reader, closing a pty's master and killing socat all end in a
``SerialException`` (or ``OSError``); the reader then marks itself lost and reopens
the configured path every ``reopen_ms`` until the node comes back. Opening the port
asserts DTR, which makes some MagTek readers print a sign-on line: the decoder
expects it (``DecoderSettings.signon_s``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import serial

from drivers.config import ReaderConfig
from drivers.reader_base import DeviceReader, ScanConsumer


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the reader uses."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


def open_serial(config: ReaderConfig) -> SerialPort:
    port: SerialPort = serial.Serial(
        port=config.path,
        baudrate=config.baudrate,
        bytesize=config.bytesize,
        parity=config.parity,
        stopbits=config.stopbits,
        timeout=0,
        exclusive=config.exclusive,
    )
    return port


class SerialReader(DeviceReader[SerialPort]):
    """A reader on a serial port."""

    def __init__(
        self,
        config: ReaderConfig,
        on_scan: ScanConsumer,
        *,
        opener: Callable[[ReaderConfig], SerialPort] = open_serial,
        **options: Any,
    ) -> None:
        super().__init__(config, on_scan, opener=opener, **options)

    def _hold(self, port: SerialPort) -> None:
        fd = port.fileno()
        while not self.stopping:
            if self._wait_readable(fd, self._timeout()):
                data = port.read(port.in_waiting or 1)
                self._deliver(self._decoder.feed(data, self._clock()))
            else:
                self._tick()
