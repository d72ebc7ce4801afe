"""The till's configuration (docs/contract.md, "Configuration"): one typed schema, loaded
once. Unknown keys and bad values are refused with the key's name; a missing file
means the defaults."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import InvalidInput
from drivers.cards import CardPolicy
from drivers.config import ReaderConfig, parse_reader

# Keys that held secrets once and are refused now, with where the secret lives.
_MOVED = {
    "phone_pepper": "phone_pepper: no longer read from the configuration, which the POS "
    "group can read: the chain's phone pepper comes from HQ at `register` and is kept in "
    'STATE/secrets.json (0600); remove the key (docs/sync.md, "Phone numbers")',
    "qr_secret": "qr_secret: no longer read from the configuration, which the POS group "
    "can read (anyone there could mint a member's phone code): the chain's QR secret "
    "comes from HQ at `register` and is kept in STATE/secrets.json (0600); a chain whose "
    "phones already make codes under this secret gives it to `tillpoints hq init "
    '--qr-secret-file`; remove the key (docs/sync.md, "The QR secret")',
}

# Programme card lengths a chain may configure: 8 leaves room for an e-card block and
# counter; 32 is the longest number the track decoders accept (drivers/tracks.py).
CARD_LENGTHS = (8, 32)

_KEYS = {
    "store",
    "till",
    "hq_url",
    "socket",
    "reader",
    "card_prefixes",
    "card_length",
    "card_luhn",
}


@dataclass(frozen=True)
class Config:
    store: str | None = None
    till: str | None = None
    hq_url: str | None = None
    socket: str = "/run/tillpoints/agent.sock"
    readers: tuple[ReaderConfig, ...] = ()
    cards: CardPolicy = field(default_factory=CardPolicy)


def load_config(path: Path) -> Config:
    if not path.exists():
        return Config()
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InvalidInput("invalid_config", f"{path}: cannot be read as TOML: {error}") from None
    return parse_config(document, str(path))


def parse_config(document: dict[str, Any], where: str = "config") -> Config:
    for key, message in _MOVED.items():
        if key in document:
            raise InvalidInput("invalid_config", f"{where}: {message}")
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise InvalidInput("invalid_config", f"{where}: {unknown[0]}: unknown key")
    strings: dict[str, str | None] = {}
    for key in ("store", "till", "hq_url", "socket"):
        if key in document and not (isinstance(document[key], str) and document[key]):
            raise InvalidInput("invalid_config", f"{where}: {key}: must be a non-empty string")
        strings[key] = document.get(key)
    for key in ("store", "till"):
        value = strings[key]
        if value is not None:
            _identifier(value, key, where)
    readers = document.get("reader", [])
    if not isinstance(readers, list) or not all(isinstance(item, dict) for item in readers):
        raise InvalidInput("invalid_config", f"{where}: reader: must be [[reader]] tables")
    prefixes = document.get("card_prefixes", ["9900"])
    if not (
        isinstance(prefixes, list)
        and prefixes
        and all(isinstance(p, str) and re.fullmatch(r"[0-9]{1,8}", p) for p in prefixes)
    ):
        raise InvalidInput("invalid_config", f"{where}: card_prefixes: a list of digit strings")
    lengths = document.get("card_length", 16)
    lengths = lengths if isinstance(lengths, list) else [lengths]
    if not lengths or not all(
        type(n) is int and CARD_LENGTHS[0] <= n <= CARD_LENGTHS[1] for n in lengths
    ):
        low, high = CARD_LENGTHS
        problem = f"a whole number {low}..{high}, or a non-empty list of them"
        raise InvalidInput("invalid_config", f"{where}: card_length: {problem}")
    luhn = document.get("card_luhn", True)
    if type(luhn) is not bool:
        raise InvalidInput("invalid_config", f"{where}: card_luhn: must be true or false")
    return Config(
        store=strings["store"],
        till=strings["till"],
        hq_url=strings["hq_url"],
        socket=strings["socket"] or Config.socket,
        readers=tuple(
            parse_reader(table, f"{where}: reader[{index}]") for index, table in enumerate(readers)
        ),
        cards=CardPolicy(
            prefixes=tuple(prefixes),
            length=lengths[0],
            luhn=luhn,
            other_lengths=tuple(lengths[1:]),
        ),
    )


def _identifier(value: str, key: str, where: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", value, re.ASCII):
        raise InvalidInput("invalid_config", f"{where}: {key}: 1-32 letters, digits, '_' or '-'")
    return value
