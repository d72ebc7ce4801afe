"""Replay a recorded reader: an ``evtest`` capture or a serial byte file.

Used by the demo's simulated reader and by tests. Captures are played through the
same ``ScanDecoder`` as live input, at the recorded pace scaled by ``speed``
(``speed = 0`` plays as fast as possible). A byte file has no timing and arrives at
one instant, as in ``tillpoints decode``. When the recording ends, the reader stays
open (the demo's reader is "connected") until it is stopped.
"""

from __future__ import annotations

from pathlib import Path

from drivers.errors import DriverError
from drivers.evtest import parse_evtest
from drivers.keys import KeyEvent
from drivers.reader_base import ReaderThread


def read_capture(path: Path, field: str = "path") -> bytes:
    """A capture file's bytes, or ``DriverError`` exit 2 naming ``field`` and the problem."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DriverError("file_not_found", f"{field}: no such file: {path}", 2) from None
    except OSError as error:
        problem = f"{field}: cannot read {path}: {error.strerror}"
        raise DriverError("file_unreadable", problem, 2) from None


def load_events(data: bytes) -> list[KeyEvent]:
    """Key events of an evtest capture. evtest prints a device's name as the kernel
    gives it, so bytes that are not UTF-8 are replaced rather than refused; a line
    that is not evtest's is refused by the parser, naming it."""
    return parse_evtest(data.decode("utf-8", errors="replace"))


class ReplayReader(ReaderThread):
    def _serve(self) -> None:
        data = read_capture(Path(self.config.path))
        events = load_events(data) if self.config.format == "evtest" else None
        self._opened()
        if events is None:
            self._deliver(self._decoder.feed(data, self._clock()))
        else:
            self._play(events)
        self._deliver(self._decoder.finish(self._clock()))
        while not self.stopping:
            self._wait(1.0)

    def _play(self, events: list[KeyEvent]) -> None:
        speed = self.config.speed
        start = self._clock()
        first = events[0].time if events else 0.0
        for event in events:
            if self.stopping:
                return
            if speed > 0:
                due = start + (event.time - first) / speed
                while (now := self._clock()) < due and not self.stopping:
                    self._tick()
                    self._wait(min(due - now, self._timeout()))
            self._deliver(self._decoder.feed_events([event], self._clock()))
