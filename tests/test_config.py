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

[[reader]]
kind = "serial"
path = "/dev/ttyACM0"
baudrate = 19200
""",
        )
    )
    assert config.store == "S001" and config.cards.prefixes == ("9900", "9901")
    assert config.readers[0].baudrate == 19200


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('stor = "S001"', "stor"),
        ('store = ""', "store"),
        ('store = "S 001"', "store"),
        ("card_length = 40", "card_length"),
        ("card_length = []", "card_length"),
        ("card_length = [16, 7]", "card_length"),
        ("card_length = true", "card_length"),
        ('card_luhn = "no"', "card_luhn"),
        ("card_luhn = 0", "card_luhn"),
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


def test_card_lengths_and_check_digit_are_configuration(tmp_path: Path) -> None:
    """Chains run non-Luhn and longer numbers (student ids, gift cards)."""
    from drivers.cards import CardClass, classify

    text = 'card_prefixes = ["77"]\ncard_length = [12, 24]\ncard_luhn = false\n'
    policy = load_config(write(tmp_path, text)).cards
    assert (policy.length, policy.other_lengths, policy.luhn) == (12, (24,), False)
    assert classify("771234567890", policy) is CardClass.MEMBER  # no check digit
    assert classify("77" + "1" * 22, policy) is CardClass.MEMBER  # 24 digits
    assert classify("77" + "1" * 14, policy) is CardClass.INVALID_CODE  # 16: not a length
    defaults = load_config(write(tmp_path, "")).cards
    assert (defaults.prefixes, defaults.length, defaults.luhn) == (("9900",), 16, True)
