"""Candidate reader devices on this machine, for ``tillpoints readers``.

Keyboard-wedge readers are listed by their stable ``/dev/input/by-id`` links (the
path to put in the configuration), with what evdev can tell about them when the
node is readable (it needs the ``input`` group). Serial readers are the ports that
``serial.tools.list_ports`` finds with USB identity, preferring ``/dev/serial/by-id``
links. On-board UARTs (``/dev/ttyS*`` with no hardware description) are not listed:
nothing tells whether a reader is attached; configure them by path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

INPUT_BY_ID = Path("/dev/input/by-id")
SERIAL_BY_ID = Path("/dev/serial/by-id")
_KEY_ENTER = 28


def list_readers(
    input_by_id: Path = INPUT_BY_ID, serial_by_id: Path = SERIAL_BY_ID
) -> list[dict[str, Any]]:
    return _input_devices(input_by_id) + _serial_ports(serial_by_id)


def _links(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _input_devices(folder: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for link in _links(folder):
        if "-event-" not in link.name:
            continue
        entry: dict[str, Any] = {
            "kind": "hid",
            "path": str(link),
            "device": os.path.realpath(link),
        }
        entry.update(_evdev_details(str(link)))
        found.append(entry)
    return found


def _evdev_details(path: str) -> dict[str, Any]:
    try:
        import evdev
    except ImportError:
        return {"readable": False}
    try:
        device = evdev.InputDevice(path)
    except OSError:
        return {"readable": False}
    try:
        keys = device.capabilities().get(evdev.ecodes.EV_KEY, [])
        return {"readable": True, "name": device.name, "has_enter_key": _KEY_ENTER in keys}
    finally:
        with contextlib.suppress(OSError):
            device.close()


def _serial_ports(folder: Path) -> list[dict[str, Any]]:
    from serial.tools import list_ports

    stable = {os.path.realpath(link): str(link) for link in _links(folder)}
    found: list[dict[str, Any]] = []
    for port in list_ports.comports():
        if port.vid is None and port.device not in stable:
            continue
        found.append(
            {
                "kind": "serial",
                "path": stable.get(port.device, port.device),
                "device": port.device,
                "description": port.description,
                "vid": port.vid,
                "pid": port.pid,
                "serial_number": port.serial_number,
            }
        )
    return found
