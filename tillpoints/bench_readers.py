"""Swipe-to-scan latency over a real pseudo-terminal, for ``tillpoints bench``.

Measured from the moment the last byte of a swipe has been written to the pty's
master to the moment the decoded scan reaches the reader's consumer callback. The
swipes are MagTek-style (tracks then one CR) and the reader uses its default
settings. A good read is reported at the CR that settles it, so the figure is the
pty, the reader thread and the decoder, not ``idle_ms`` (which only delays swipes
that are not settled, such as read errors: docs/readers.md, "Swipes").
"""

from __future__ import annotations

import os
import queue
import tempfile
import time
from pathlib import Path

from drivers.cards import luhn_digit
from drivers.config import ReaderConfig
from drivers.scan import Scan
from drivers.serial_reader import SerialReader


def _card(index: int) -> str:
    body = f"9900{index:011d}"
    return body + luhn_digit(body)


def swipe_to_scan_p99_ms(samples: int = 200) -> dict[str, float | str]:
    """The 99th percentile latency in milliseconds: ``{"value": ms, "unit": "ms"}``."""
    arrivals: queue.Queue[tuple[float, Scan]] = queue.Queue()
    master, slave = os.openpty()
    with tempfile.TemporaryDirectory() as folder:
        link = Path(folder) / "reader"
        link.symlink_to(os.ttyname(slave))
        config = ReaderConfig(kind="serial", path=str(link), signon_ms=0)
        reader = SerialReader(config, lambda scan: arrivals.put((time.perf_counter(), scan)))
        reader.start()
        latencies: list[float] = []
        try:
            _wait_connected(reader)
            for index in range(samples):
                card = _card(index)
                os.write(master, f"%B{card}^BENCH/SWIPE^3012?;{card}=3012?\r".encode())
                written = time.perf_counter()
                arrived, scan = arrivals.get(timeout=5)
                if scan.card != card:
                    raise RuntimeError("bench: the reader decoded another card")
                latencies.append((arrived - written) * 1000)
        finally:
            reader.stop()
            os.close(master)
            os.close(slave)
    latencies.sort()
    rank = max(0, min(len(latencies) - 1, round(0.99 * len(latencies)) - 1))
    return {"value": round(latencies[rank], 3), "unit": "ms"}


def _wait_connected(reader: SerialReader, timeout: float = 5.0) -> None:
    limit = time.monotonic() + timeout
    while not reader.health().connected:
        if time.monotonic() > limit:
            raise RuntimeError("bench: the reader did not open the pty")
        time.sleep(0.005)
