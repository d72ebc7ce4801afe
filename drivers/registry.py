"""Which class reads which ``kind`` of reader: one plain dict, chosen by the
configuration (docs/style.md: explicit registration, no metaclass or import magic)."""

from __future__ import annotations

from typing import Any

from drivers.config import ReaderConfig
from drivers.hid_reader import HidReader
from drivers.reader_base import ReaderThread, ScanConsumer
from drivers.replay import ReplayReader
from drivers.serial_reader import SerialReader

READER_KINDS: dict[str, type[ReaderThread]] = {
    "serial": SerialReader,
    "hid": HidReader,
    "replay": ReplayReader,
}


def make_reader(config: ReaderConfig, on_scan: ScanConsumer, **options: Any) -> ReaderThread:
    """A reader for ``config``, not yet started. ``options`` go to ``ReaderThread``:
    ``settings`` (a ``DecoderSettings`` with the programme's policy and QR secret),
    ``on_state``, ``clock``, ``wall_clock``."""
    return READER_KINDS[config.kind](config, on_scan, **options)
