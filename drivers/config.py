"""One ``[[reader]]`` table of the agent's TOML configuration, validated.

Unknown keys and bad values are refused with the key named (docs/style.md: a typo in
``baudrate`` must not silently fall back to a default). Keys that belong to another
kind of reader are refused too: ``baudrate`` on a HID reader would mean somebody
configured the wrong device.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from drivers.cards import DEFAULT_POLICY, CardPolicy
from drivers.decoder import DecoderSettings
from drivers.errors import DriverError
from drivers.layouts import LAYOUTS

Kind = Literal["serial", "hid", "replay"]
KINDS: tuple[Kind, ...] = ("serial", "hid", "replay")


@dataclass(frozen=True)
class ReaderConfig:
    kind: Kind
    path: str
    name: str = ""
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    exclusive: bool = True
    grab: bool = True
    layout: str = "us"
    prefix: str = ""
    suffix: str = ""
    lrc: bool = False
    idle_ms: int = 50
    duplicate_ms: int = 1000
    signon_ms: int | None = None
    max_line: int = 512
    reopen_ms: int = 500
    swipe_end: Literal["idle", "terminator"] = "idle"
    format: Literal["serial", "evtest"] = "serial"
    speed: float = 1.0

    def decoder_settings(
        self,
        policy: CardPolicy = DEFAULT_POLICY,
        qr_secret: bytes | None = None,
        qr_source: Callable[[], bytes | None] | None = None,
    ) -> DecoderSettings:
        """Serial readers print a sign-on line when opened; keyboards never do."""
        signon = self.signon_ms
        if signon is None:
            signon = 0 if self.kind == "hid" or self.format == "evtest" else 2000
        return DecoderSettings(
            policy=policy,
            qr_secret=qr_secret,
            qr_source=qr_source,
            lrc=self.lrc,
            prefix=self.prefix.encode("ascii"),
            suffix=self.suffix.encode("ascii"),
            layout=self.layout,
            idle_s=self.idle_ms / 1000,
            duplicate_s=self.duplicate_ms / 1000,
            signon_s=signon / 1000,
            max_line=self.max_line,
            swipe_end=self.swipe_end,
        )


Check = Callable[[Any], str | None]


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not int or not low <= value <= high:
            return f"must be an integer from {low} to {high}"
        return None

    return check


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if type(value) not in (int, float) or not low <= value <= high:
            return f"must be a number from {low} to {high}"
        return None

    return check


def _choice(*allowed: Any) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is bool or value not in allowed:
            return "must be one of " + ", ".join(repr(a) for a in allowed)
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if type(value) is bool else "must be true or false"


def _text(max_length: int) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.isascii() or len(value) > max_length:
            return f"must be an ASCII string of at most {max_length} characters"
        return None

    return check


def _path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        return "must be an absolute path"
    return None


_COMMON: dict[str, Check] = {
    "kind": _choice(*KINDS),
    "path": _path,
    "name": _text(64),
    "prefix": _text(8),
    "suffix": _text(8),
    "lrc": _boolean,
    "idle_ms": _integer(5, 5000),
    "duplicate_ms": _integer(0, 60000),
    "max_line": _integer(64, 4096),
    "reopen_ms": _integer(10, 60000),
    "swipe_end": _choice("idle", "terminator"),
}
_SERIAL: dict[str, Check] = {
    "baudrate": _integer(50, 4_000_000),
    "bytesize": _choice(5, 6, 7, 8),
    "parity": _choice("N", "E", "O", "M", "S"),
    "stopbits": _choice(1, 1.5, 2),
    "exclusive": _boolean,
    "signon_ms": _integer(0, 60000),
}
_KEYBOARD: dict[str, Check] = {"layout": _choice(*LAYOUTS)}
KEYS: Mapping[str, Mapping[str, Check]] = {
    "serial": {**_COMMON, **_SERIAL},
    "hid": {**_COMMON, **_KEYBOARD, "grab": _boolean},
    "replay": {
        **_COMMON,
        **_KEYBOARD,
        "signon_ms": _SERIAL["signon_ms"],
        "format": _choice("serial", "evtest"),
        "speed": _number(0, 1000),
    },
}
_ALL_KEYS = {f.name for f in fields(ReaderConfig)}


def _invalid(where: str, key: str, problem: str) -> DriverError:
    return DriverError("invalid_config", f"{where}.{key}: {problem}", exit_status=2)


def parse_reader(table: Mapping[str, Any], where: str) -> ReaderConfig:
    """Validate one ``[[reader]]`` table; ``where`` names it in errors (``reader[0]``)."""
    if not isinstance(table, Mapping):
        raise DriverError("invalid_config", f"{where}: must be a table", exit_status=2)
    kind = table.get("kind")
    if kind is None:
        raise _invalid(where, "kind", "missing (one of " + ", ".join(KINDS) + ")")
    problem = _COMMON["kind"](kind)
    if problem:
        raise _invalid(where, "kind", problem)
    allowed = KEYS[kind]
    for key in table:
        if key not in allowed:
            raise _invalid(where, str(key), _unknown(str(key), kind, allowed))
        problem = allowed[key](table[key])
        if problem:
            raise _invalid(where, key, problem)
    if "path" not in table:
        raise _invalid(where, "path", "missing")
    return ReaderConfig(**dict(table))


def _unknown(key: str, kind: str, allowed: Mapping[str, Check]) -> str:
    if key in _ALL_KEYS:
        return f"not a setting of {kind} readers"
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
