"""The configuration schema: unknown keys and bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Config, load_config
from agent.errors import InvalidInput
from drivers.errors import DriverError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()


def test_a_full_configuration(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
store = "S001"
till = "T01"
socket = "/run/tillpoints/agent.sock"
card_prefixes = ["9900", "9901"]
qr_secret = "a-chain-secret-of-some-length"

[[reader]]
kind = "serial"
path = "/dev/ttyACM0"
baudrate = 19200
""",
        )
    )
    assert config.store == "S001" and config.cards.prefixes == ("9900", "9901")
    assert config.readers[0].baudrate == 19200 and config.qr_secret is not None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('stor = "S001"', "stor"),
        ('store = ""', "store"),
        ('store = "S 001"', "store"),
        ("card_length = 40", "card_length"),
        ('card_prefixes = ["99a0"]', "card_prefixes"),
        ('qr_secret = "short"', "qr_secret"),
        ("reader = 5", "reader"),
        ("store = ", "TOML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.code == "invalid_config" and named in caught.value.message


def test_a_typo_in_a_reader_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[[reader]]\nkind = "serial"\npath = "/dev/ttyACM0"\nbaudrat = 9600\n')
    with pytest.raises(DriverError) as caught:
        load_config(path)
    assert caught.value.code == "invalid_config" and "baudrat" in caught.value.message
