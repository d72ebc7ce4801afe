"""Every sample in tests/fixtures and tests/corpus decodes as its file says.

``tests/corpus/real-world.jsonl`` and ``tests/corpus/evtest/`` hold data that nobody
here wrote: each sample names its public source and what the source's own parser or
document says of it (docs/readers.md, "Real-world corpus")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from drivers.cards import _PAYMENT_RANGES, luhn_ok
from drivers.decoder import DecoderSettings, ScanDecoder, decode_stream
from drivers.errors import DriverError
from drivers.scan import Scan
from tillpoints.cli_readers import decode_capture

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
CORPUS = REPO / "tests" / "corpus"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_matches(got: list[dict[str, str]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected), (got, expected)
    for item, want in zip(got, expected, strict=True):
        assert item["kind"] == want["kind"], (got, expected)
        if want["kind"] == "member":
            assert set(item) == {"kind", "card", "source"}
            assert item["card"] == want["card"]
            assert item["source"] in want["source"]
        else:
            assert set(item) == {"kind", "error", "message"}
            assert item["error"] == want["error"]
            assert item["message"]


SERIAL = _jsonl(FIXTURES / "reader-samples.jsonl")
EVTEST = _jsonl(FIXTURES / "evtest" / "expected.jsonl")


@pytest.mark.parametrize("sample", SERIAL, ids=[s["name"] for s in SERIAL])
def test_shared_serial_sample(sample: dict[str, Any]) -> None:
    data = sample["input"].encode("latin-1")
    assert_matches(decode_capture(data, "serial"), sample["expected"])


@pytest.mark.parametrize("sample", EVTEST, ids=[s["name"] for s in EVTEST])
def test_shared_evtest_capture(sample: dict[str, Any]) -> None:
    data = (FIXTURES / "evtest" / sample["file"]).read_bytes()
    assert_matches(decode_capture(data, "evtest"), sample["expected"])


def _settings(options: dict[str, Any]) -> tuple[DecoderSettings, float]:
    options = dict(options)
    now = float(options.pop("now", 0))
    if "qr_secret" in options:
        options["qr_secret"] = bytes.fromhex(options["qr_secret"])
    for key in ("prefix", "suffix"):
        if key in options:
            options[key] = options[key].encode("ascii")
    return DecoderSettings(**options), now


CORPUS_SERIAL = _jsonl(CORPUS / "serial.jsonl")


@pytest.mark.parametrize("case", CORPUS_SERIAL, ids=[c["name"] for c in CORPUS_SERIAL])
def test_corpus_serial(case: dict[str, Any]) -> None:
    settings, now = _settings(case.get("settings", {}))
    scans = decode_stream(case["input"].encode("latin-1"), settings, lambda: now)
    assert_matches([scan.to_json() for scan in scans], case["expected"])


@pytest.mark.parametrize("case", CORPUS_SERIAL, ids=[c["name"] for c in CORPUS_SERIAL])
def test_corpus_split_anywhere_decodes_the_same(case: dict[str, Any]) -> None:
    """Bytes arrive in arbitrary chunks; framing must not depend on where reads split."""
    settings, now = _settings(case.get("settings", {}))
    data = case["input"].encode("latin-1")
    whole = decode_stream(data, settings, lambda: now)
    for size in (1, 3, 7):
        decoder = ScanDecoder(settings, lambda: now)
        scans: list[Scan] = []
        for start in range(0, len(data), size):
            scans += decoder.feed(data[start : start + size], 0.0)
        scans += decoder.finish()
        assert [s.to_json() for s in scans] == [s.to_json() for s in whole]


REAL_WORLD = _jsonl(CORPUS / "real-world.jsonl")
REAL_EVTEST = _jsonl(CORPUS / "evtest" / "expected.jsonl")


@pytest.mark.parametrize("sample", REAL_WORLD, ids=[s["name"] for s in REAL_WORLD])
def test_real_world_serial_sample(sample: dict[str, Any]) -> None:
    assert sample["source"] and sample["source_outcome"]
    assert_matches(decode_capture(sample["input"].encode("latin-1"), "serial"), sample["expected"])


def test_real_world_corpus_has_four_independent_sources() -> None:
    sources = {sample["source"].split(" ")[0] for sample in REAL_WORLD + REAL_EVTEST}
    assert len(sources) >= 4, sources


@pytest.mark.parametrize("sample", REAL_EVTEST, ids=[s["name"] for s in REAL_EVTEST])
def test_real_world_evtest_capture(sample: dict[str, Any]) -> None:
    data = (CORPUS / "evtest" / sample["file"]).read_bytes()
    expected = sample["expected"]
    if isinstance(expected, dict):
        with pytest.raises(DriverError) as refused:
            decode_capture(data, "evtest")
        assert refused.value.code == expected["error"] and refused.value.exit_status == 2
        assert refused.value.message.startswith(f"line {expected['line']}:")
    else:
        assert_matches(decode_capture(data, "evtest"), expected)


def _looks_like_payment_card(digits: str) -> bool:
    """The test's own, wider net than ``drivers.cards.is_payment_card``: any Luhn-valid
    12-19 digit run in a payment range, whatever length the network would issue."""
    if not (12 <= len(digits) <= 19) or not luhn_ok(digits):
        return False
    return any(low <= digits[: len(low)] <= high for low, high, _ in _PAYMENT_RANGES)


def test_no_payment_digits_in_any_real_world_output() -> None:
    """Every payment number of the corpus is decoded without one of its digits runs
    appearing in the output (docs/architecture.md invariant 6)."""
    for sample in REAL_WORLD:
        text = json.dumps(decode_capture(sample["input"].encode("latin-1"), "serial"))
        for run in re.findall(r"[0-9][0-9 ]{11,}", sample["input"]):
            digits = run.replace(" ", "")
            if len(digits) >= 12 and (_looks_like_payment_card(digits) or "payment_card" in text):
                assert digits not in text and digits[-4:] not in text
