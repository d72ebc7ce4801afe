"""``tillpoints bench --flush-delay-ms MS``: the till's figures on a slower disk flush.

The till's targets are ratios against a durable commit measured in the same run, so
they depend on what a flush costs. A server's disk flushes in about 0.2 ms, where a
till's eMMC or SATA SSD without power-loss protection takes 1 ms and more; the earn's
own work weighs differently beside each. This builds ``flush_delay.c`` (an
``LD_PRELOAD`` shim that waits before every ``fsync`` and ``fdatasync``) with the
machine's C compiler, and runs the bench in a child process with it loaded. The
agent the API figures start is that process's child, so it flushes as slowly.

Benchmarks only: the shim makes a flush slower, never faster, and changes nothing
written; nothing of the product loads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent.errors import InvalidInput
from drivers.errors import TillpointsError

SOURCE = Path(__file__).with_name("flush_delay.c")
DELAY_ENV = "TILLPOINTS_FLUSH_DELAY_US"
MOST_MS = Decimal(1000)


def delay_us(text: str) -> int:
    """``--flush-delay-ms``: a decimal number of milliseconds, 0 to 1,000, as
    microseconds."""
    try:
        ms: Decimal | None = Decimal(text)
    except InvalidOperation:
        ms = None
    if ms is None or not ms.is_finite() or not 0 <= ms <= MOST_MS or text.strip() != text:
        raise InvalidInput(
            "invalid_flush_delay", f"flush delay: milliseconds from 0 to {MOST_MS} (got {text!r})"
        )
    return int(ms * 1000)


def build(directory: Path) -> Path:
    """The shim, compiled into ``directory``."""
    name = os.environ.get("CC") or "cc"
    compiler = shutil.which(name)
    if compiler is None:
        raise TillpointsError(
            "no_compiler",
            f"bench --flush-delay-ms builds its fsync shim with a C compiler: {name!r} "
            "is not on PATH (set CC)",
        )
    library = directory / "flush_delay.so"
    made = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise TillpointsError(
            "shim_build_failed", f"{name} could not build the shim: {made.stderr.strip()}"
        )
    return library


def preloaded(library: Path, delay: int) -> dict[str, str]:
    """This process's environment with the shim loaded first, waiting ``delay`` µs."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    env[DELAY_ENV] = str(delay)
    return env


def run(delay: int, arguments: dict[str, Any]) -> dict[str, Any]:
    """``bench.run(**arguments)`` in a child process whose flushes wait ``delay`` µs."""
    with tempfile.TemporaryDirectory(prefix="tillpoints-flush-") as directory:
        library = build(Path(directory))
        child = subprocess.run(
            [sys.executable, "-m", "tillpoints.flush_delay", json.dumps(arguments)],
            env=preloaded(library, delay),
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    if child.returncode != 0:
        raise TillpointsError("bench_failed", f"the bench under the shim exited {child.returncode}")
    result: dict[str, Any] = json.loads(child.stdout)
    result["figures"]["flush_delay_ms"] = {
        "value": delay / 1000,
        "unit": "ms added to every fsync and fdatasync (tillpoints/flush_delay.c)",
    }
    return result


def main() -> None:
    from tillpoints import bench

    print(json.dumps(bench.run(**json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
