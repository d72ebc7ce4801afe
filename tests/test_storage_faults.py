"""A full disk and a read-only state directory: the command fails cleanly with a
stable code, nothing is half-written, and `log verify` still passes afterwards.

These need a real small filesystem, so they mount a tmpfs (CI runs as root)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

CARD = "9900835840532866"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def tp(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TILLPOINTS_CONFIG": "/nonexistent.toml"}
    return subprocess.run(
        [sys.executable, "-m", "tillpoints.cli", "--state", str(state), *argv, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )


def journal(state: Path) -> list[str]:
    import json

    out = tp(state, "log", "export", "--out", "/tmp/tp-export-check.jsonl")
    assert out.returncode == 0, out.stdout
    lines = Path("/tmp/tp-export-check.jsonl").read_text().splitlines()[1:]
    return [json.loads(line)["body"].get("receipt", "") for line in lines]


def test_full_disk_fails_cleanly_and_the_log_still_verifies(small_disk: Path) -> None:
    state = small_disk / "till"
    assert tp(state, "init", "--store", "S001", "--till", "T01").returncode == 0
    assert tp(state, "enroll", "--name", "A", "--phone", "5550001", "--card", CARD).returncode == 0
    filler = small_disk / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    failed = None
    for number in range(200):
        done = tp(
            state,
            "earn",
            "--member",
            CARD,
            "--receipt",
            f"F{number}",
            "--line",
            *(f"grocery:1:{n + 1}.00" for n in range(40)),
        )
        if done.returncode != 0:
            failed = (number, done)
            break
    assert failed is not None, "the disk never filled up"
    number, done = failed
    assert done.returncode == 1, done.stdout
    assert '"error": "disk_full"' in done.stdout or '"error": "storage_error"' in done.stdout
    assert "Traceback" not in done.stderr
    filler.unlink()
    verified = tp(state, "log", "verify")
    assert verified.returncode == 0, verified.stdout
    receipts = journal(state)
    assert f"F{number}" not in receipts
    assert receipts.count(f"F{max(0, number - 1)}") == (1 if number else 0)
    assert (
        tp(state, "earn", "--member", CARD, "--receipt", "after", "--amount", "1.00").returncode
        == 0
    )


def test_read_only_state_fails_cleanly(small_disk: Path) -> None:
    state = small_disk / "till"
    assert tp(state, "init", "--store", "S001", "--till", "T01").returncode == 0
    assert tp(state, "enroll", "--name", "A", "--phone", "5550001", "--card", CARD).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = tp(state, "earn", "--member", CARD, "--receipt", "RO1", "--amount", "1.00")
        assert done.returncode == 1, done.stdout
        assert '"error": "read_only"' in done.stdout, done.stdout
        assert "Traceback" not in done.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert tp(state, "log", "verify").returncode == 0
    assert "RO1" not in journal(state)
