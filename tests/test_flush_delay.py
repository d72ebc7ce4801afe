"""``tillpoints bench --flush-delay-ms``: the fsync shim waits, passes every flush on,
and the option refuses what is not a delay (tillpoints/flush_delay.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.errors import InvalidInput
from drivers.errors import TillpointsError
from tests.sync_helpers import cli
from tillpoints import flush_delay

# A child that times durable SQLite commits (WAL, synchronous=FULL: one fsync each)
# and plain fsyncs, and reads its rows back.
_TIMED = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (n INTEGER)")
    began = time.perf_counter()
    for n in range(10):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        conn.execute("COMMIT")
    commits = time.perf_counter() - began
    fd = os.open(sys.argv[1] + ".raw", os.O_WRONLY | os.O_CREAT, 0o600)
    began = time.perf_counter()
    for _ in range(5):
        os.write(fd, b"x")
        os.fsync(fd)
        os.fdatasync(fd)
    flushes = time.perf_counter() - began
    print(commits, flushes, conn.execute("SELECT count(*) FROM t").fetchone()[0])
    """
)


def _timed(tmp_path: Path, env: dict[str, str]) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", _TIMED, str(tmp_path / "t.db")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def test_the_shim_makes_every_flush_wait_and_still_flushes(tmp_path: Path) -> None:
    library = flush_delay.build(tmp_path)
    commits, flushes, rows = _timed(tmp_path, flush_delay.preloaded(library, 20_000))
    # Ten commits at 20 ms or more each; five fsyncs and five fdatasyncs likewise.
    assert commits >= 10 * 0.020
    assert flushes >= 10 * 0.020
    assert rows == 10


def test_the_shim_at_no_delay_passes_flushes_straight_on(tmp_path: Path) -> None:
    library = flush_delay.build(tmp_path)
    _, _, rows = _timed(tmp_path, flush_delay.preloaded(library, 0))
    assert rows == 10


@pytest.mark.parametrize(
    ("text", "us"), [("0", 0), ("1", 1000), ("2.5", 2500), ("1000", 1_000_000)]
)
def test_a_delay_is_milliseconds(text: str, us: int) -> None:
    assert flush_delay.delay_us(text) == us


@pytest.mark.parametrize("text", ["-1", "1000.001", "abc", "", " 1", "NaN", "Infinity", "1,5"])
def test_bench_refuses_a_delay_that_is_not_one(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        flush_delay.delay_us(text)
    assert caught.value.code == "invalid_flush_delay"
    code, answer = cli(None, "bench", "--only", "nothing", "--flush-delay-ms", text)
    assert (code, answer["error"]) == (2, "invalid_flush_delay")
    assert "figures" not in answer


@pytest.mark.parametrize(
    ("compiler", "code"), [("no-such-compiler-here", "no_compiler"), ("false", "shim_build_failed")]
)
def test_bench_says_why_its_shim_is_not_built(
    compiler: str, code: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", compiler)
    with pytest.raises(TillpointsError) as caught:
        flush_delay.build(tmp_path)
    assert caught.value.code == code
    assert compiler in caught.value.message
    assert not (tmp_path / "flush_delay.so").exists()


def test_bench_runs_under_the_shim_and_says_so() -> None:
    """The figures come back from the child process, with the delay they ran under."""
    code, answer = cli(None, "bench", "--only", "nothing", "--flush-delay-ms", "1.5")
    assert code == 0
    assert answer["figures"] == {
        "flush_delay_ms": {
            "value": 1.5,
            "unit": "ms added to every fsync and fdatasync (tillpoints/flush_delay.c)",
        }
    }
