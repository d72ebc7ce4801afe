"""``tillpoints decode`` and ``tillpoints readers``, the replay reader and the bench hook."""

from __future__ import annotations

import io
import json
import queue
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.errors import InvalidInput
from drivers.config import ReaderConfig
from drivers.errors import DriverError
from drivers.lifecycle import ReaderState
from drivers.registry import make_reader
from drivers.scan import Scan
from tillpoints.bench_readers import swipe_to_scan_p99_ms
from tillpoints.cli import build_parser
from tillpoints.cli_readers import COMMANDS
from tillpoints.commands import Context

FIXTURES = Path(__file__).resolve().parent / "fixtures"
A = "9900835840532866"


def run(argv: list[str], stdin: bytes = b"") -> dict[str, Any]:
    args = build_parser(COMMANDS).parse_args(argv)
    ctx = Context.from_args(args)
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        result: dict[str, Any] = args.command_obj.run(ctx)
    finally:
        sys.stdin = old
    json.dumps(result)
    return result


def test_decode_serial_file(tmp_path: Path) -> None:
    capture = tmp_path / "swipes.bin"
    capture.write_bytes(f";{A}=3012?\r\x02;4111111111111111=2512?\x03".encode())
    result = run(["decode", "--file", str(capture), "--json"])
    assert result == {
        "scans": [
            {"kind": "member", "card": A, "source": "track2"},
            {
                "kind": "error",
                "error": "payment_card",
                "message": "a payment card was swiped; its number was discarded",
            },
        ]
    }


def test_decode_from_stdin() -> None:
    assert run(["decode"], stdin=f"{A}\r".encode())["scans"][0]["source"] == "qr"


def test_decode_evtest_file() -> None:
    result = run(["decode", "--from", "evtest", "--file", str(FIXTURES / "evtest/qr-code.txt")])
    assert result["scans"] == [{"kind": "member", "card": A, "source": "qr"}]


def test_decode_missing_file_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(DriverError) as raised:
        run(["decode", "--file", str(tmp_path / "nope.txt")])
    assert (raised.value.code, raised.value.exit_status) == ("file_not_found", 2)


def test_decode_directory_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(DriverError) as raised:
        run(["decode", "--file", str(tmp_path)])
    assert (raised.value.code, raised.value.exit_status) == ("file_unreadable", 2)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00", b"Event: time x, nonsense\n", b"hello\n"])
def test_decode_malformed_evtest_is_exit_2(tmp_path: Path, content: bytes) -> None:
    capture = tmp_path / "bad.txt"
    capture.write_bytes(content)
    with pytest.raises(DriverError) as raised:
        run(["decode", "--from", "evtest", "--file", str(capture)])
    assert raised.value.exit_status == 2


def test_readers_lists_nothing_here_cleanly() -> None:
    result = run(["readers", "--json"])
    assert isinstance(result["readers"], list)


def test_main_maps_errors_to_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tillpoints.cli_ledger")
    from tillpoints.cli import main

    status = main(["decode", "--file", str(tmp_path / "missing"), "--json"])
    assert status == 2
    assert json.loads(capsys.readouterr().out)["error"] == "file_not_found"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "fmt", "card"),
    [("qr-code.txt", "evtest", A), ("no-enter-suffix.txt", "evtest", "9900390788616925")],
)
def test_replay_reader_plays_a_capture(name: str, fmt: Literal["evtest"], card: str) -> None:
    scans: queue.Queue[Scan] = queue.Queue()
    config = ReaderConfig(kind="replay", path=str(FIXTURES / "evtest" / name), format=fmt, speed=4)
    reader = make_reader(config, scans.put)
    reader.start()
    try:
        assert scans.get(timeout=5).card == card
        assert reader.health().connected
    finally:
        reader.stop()
    assert reader.health().state is ReaderState.CLOSED


@pytest.mark.timeout(30)
def test_replay_reader_plays_bytes_and_survives_a_missing_file(tmp_path: Path) -> None:
    capture = tmp_path / "serial.bin"
    scans: queue.Queue[Scan] = queue.Queue()
    config = ReaderConfig(kind="replay", path=str(capture), reopen_ms=20)
    reader = make_reader(config, scans.put)
    reader.start()
    try:
        # Appear whole (as a plugged-in device would), not half-written.
        partial = tmp_path / "serial.part"
        partial.write_bytes(f"%B{A}^X/Y^3012?;{A}=3012?\r".encode())
        partial.rename(capture)
        assert scans.get(timeout=5).card == A
        assert reader.health().errors >= 0
    finally:
        reader.stop()


@pytest.mark.timeout(60)
def test_bench_returns_a_figure() -> None:
    figure = swipe_to_scan_p99_ms(samples=5)
    assert figure["unit"] == "ms"
    assert isinstance(figure["value"], float)


def test_decode_follows_the_configured_card_rules(tmp_path: Path) -> None:
    """A chain whose gift cards are 24 digits without a check digit (issue 13)."""
    config = tmp_path / "agent.toml"
    config.write_text('card_prefixes = ["7711"]\ncard_length = [24]\ncard_luhn = false\n')
    gift = "7711" + "0123456789" * 2
    capture = tmp_path / "swipe.bin"
    capture.write_bytes(f";{gift}=99?\r;{A}=3012?\r".encode())
    result = run(["--config", str(config), "decode", "--file", str(capture)])
    assert [item.get("card") or item["error"] for item in result["scans"]] == [gift, "foreign_card"]
    config.write_text("card_luhn = 1\n")
    with pytest.raises(InvalidInput) as refused:
        run(["--config", str(config), "decode", "--file", str(capture)])
    assert refused.value.code == "invalid_config" and "card_luhn" in refused.value.message
