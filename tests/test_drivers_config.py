"""Reader configuration, the kind registry, the lifecycle table and device listing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.config import KINDS, parse_reader
from drivers.errors import DriverError
from drivers.lifecycle import TRANSITIONS, Lifecycle, ReaderState
from drivers.listing import list_readers
from drivers.registry import READER_KINDS


def refused(table: dict[str, Any]) -> str:
    with pytest.raises(DriverError) as raised:
        parse_reader(table, "reader[1]")
    assert raised.value.code == "invalid_config"
    assert raised.value.exit_status == 2
    return raised.value.message


def test_contract_example_tables() -> None:
    serial = parse_reader({"kind": "serial", "path": "/dev/ttyACM0", "baudrate": 9600}, "r[0]")
    assert (serial.baudrate, serial.bytesize, serial.parity, serial.stopbits) == (9600, 8, "N", 1)
    hid = parse_reader({"kind": "hid", "path": "/dev/input/by-id/usb-X-event-kbd"}, "r[1]")
    assert hid.layout == "us" and hid.grab
    assert hid.decoder_settings().signon_s == 0
    assert serial.decoder_settings().signon_s == 2.0


def test_full_serial_table() -> None:
    config = parse_reader(
        {
            "kind": "serial", "path": "/dev/serial/by-id/usb-MagTek", "baudrate": 19200,
            "bytesize": 7, "parity": "E", "stopbits": 1.5, "prefix": "\u0002", "suffix": "\r",
            "lrc": True, "idle_ms": 80, "swipe_end": "terminator", "exclusive": False,
        },
        "reader[0]",
    )  # fmt: skip
    settings = config.decoder_settings()
    assert settings.lrc and settings.prefix == b"\x02" and settings.idle_s == 0.08


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "serial", "path": "/dev/x", "baudrat": 9600}, "reader[1].baudrat: unknown key"),
        ({"kind": "serial", "path": "/dev/x", "baudrate": "fast"}, "reader[1].baudrate: must"),
        ({"kind": "serial", "path": "/dev/x", "baudrate": True}, "reader[1].baudrate: must"),
        ({"kind": "serial", "path": "/dev/x", "parity": "X"}, "reader[1].parity: must"),
        ({"kind": "serial", "path": "/dev/x", "stopbits": 3}, "reader[1].stopbits: must"),
        ({"kind": "serial", "path": "/dev/x", "bytesize": 9}, "reader[1].bytesize: must"),
        ({"kind": "serial", "path": "dev/x"}, "reader[1].path: must be an absolute path"),
        ({"kind": "serial"}, "reader[1].path: missing"),
        ({"path": "/dev/x"}, "reader[1].kind: missing"),
        ({"kind": "usb", "path": "/dev/x"}, "reader[1].kind: must be one of"),
        ({"kind": "hid", "path": "/dev/x", "baudrate": 9600}, "not a setting of hid readers"),
        ({"kind": "hid", "path": "/dev/x", "layout": "fr"}, "reader[1].layout: must"),
        ({"kind": "hid", "path": "/dev/x", "lrc": "yes"}, "reader[1].lrc: must be true or false"),
        ({"kind": "hid", "path": "/dev/x", "suffix": "é"}, "reader[1].suffix: must"),
        ({"kind": "replay", "path": "/x", "format": "pcap"}, "reader[1].format: must"),
    ],
)
def test_bad_tables_are_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    assert message in refused(table)


def test_typo_suggests_the_key() -> None:
    assert "did you mean baudrate?" in refused({"kind": "serial", "path": "/x", "baudrat": 1})


def test_not_a_table() -> None:
    with pytest.raises(DriverError):
        parse_reader(["kind"], "reader[0]")  # type: ignore[arg-type]


def test_every_kind_has_a_reader_class() -> None:
    assert set(READER_KINDS) == set(KINDS)


def test_lifecycle_table() -> None:
    seen: list[ReaderState] = []
    life = Lifecycle(seen.append)
    for event in ("open", "grab", "lose", "open", "close"):
        life.fire(event)
    assert seen == [
        ReaderState.OPEN, ReaderState.GRABBED, ReaderState.LOST, ReaderState.OPEN,
        ReaderState.CLOSED,
    ]  # fmt: skip
    with pytest.raises(DriverError) as raised:
        life.fire("open")
    assert raised.value.code == "illegal_transition"


@pytest.mark.parametrize("state", list(ReaderState))
def test_only_listed_transitions_are_legal(state: ReaderState) -> None:
    for event in ("open", "grab", "release", "lose", "close"):
        life = Lifecycle()
        life._state = state
        if (state, event) in TRANSITIONS:
            assert life.fire(event) is TRANSITIONS[(state, event)]
        else:
            with pytest.raises(DriverError):
                life.fire(event)


def test_listing_on_a_machine_without_readers(tmp_path: Path) -> None:
    assert list_readers(tmp_path / "input", tmp_path / "serial") == []


def test_listing_shows_by_id_links(tmp_path: Path) -> None:
    folder = tmp_path / "by-id"
    folder.mkdir()
    (folder / "usb-Mag-Tek_USB_Swipe_Reader-event-kbd").symlink_to(tmp_path / "event7")
    (folder / "usb-Mag-Tek_USB_Swipe_Reader-if01").symlink_to(tmp_path / "mouse0")
    [entry] = list_readers(folder, tmp_path / "serial")
    assert entry["kind"] == "hid"
    assert entry["path"].endswith("-event-kbd")
    assert entry["readable"] is False
