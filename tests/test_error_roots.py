"""One exception root per package, all below the project's (docs/style.md): the
command line, the local API and HQ's service each map ``TillpointsError`` once,
with the exit and HTTP statuses of docs/contract.md."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from agent.errors import InvalidInput, LedgerError, Refused, VerificationFailed
from drivers.errors import DriverError, TillpointsError
from sync.errors import SyncError, invalid, refused, unverified
from tillpoints.cli import main

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"drivers": DriverError, "agent": LedgerError, "sync": SyncError}


def test_each_package_has_its_root_below_the_projects() -> None:
    assert all(issubclass(root, TillpointsError) for root in ROOTS.values())
    # Siblings, not one inside another: a sync failure is not the ledger's.
    for name, root in ROOTS.items():
        others = [other for other_name, other in ROOTS.items() if other_name != name]
        assert not any(issubclass(root, other) for other in others), name


@pytest.mark.parametrize(
    ("error", "exit_status", "http_status"),
    [
        (LedgerError("io_error", "x"), 1, 500),
        (InvalidInput("invalid_amount", "x"), 2, 400),
        (Refused("insufficient_points", "x"), 3, 409),
        (VerificationFailed("chain_broken", "x"), 4, 422),
        (DriverError("invalid_capture", "x", 2), 2, 400),
        (DriverError("device_lost", "x"), 1, 500),
        (invalid("invalid_option", "x"), 2, 400),
        (refused("device_frozen", "x", http_status=403), 3, 403),
        (unverified("bad_signature", "x", http_status=401), 4, 401),
    ],
)
def test_statuses_are_carried_by_the_error(
    error: TillpointsError, exit_status: int, http_status: int
) -> None:
    assert (error.exit_status, error.http_status) == (exit_status, http_status)
    assert error.as_json() == {"error": error.code, "message": "x"}


def _public_exceptions(package: str) -> list[str]:
    """Exception classes a package defines that could leave it (not ``_private``)."""
    found = []
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(base) for base in node.bases}
                if bases & {"Exception", "BaseException"}:
                    found.append(f"{path.relative_to(REPO)}:{node.name}")
    return found


def test_no_package_of_the_till_or_hq_grows_a_second_root() -> None:
    """The ledger, readers and sync raise only their root's family; a new
    ``class X(Exception)`` there would escape the CLI's and the APIs' one mapping."""
    assert [name for p in ROOTS for name in _public_exceptions(p)] == [
        "drivers/errors.py:TillpointsError"
    ]


def test_the_cli_maps_each_root_in_its_one_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A driver's error and a sync error reach the same exit status and JSON."""
    capture = tmp_path / "capture.txt"
    capture.write_text("garbage line\n")
    assert main(["decode", "--from", "evtest", "--file", str(capture), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "invalid_capture"
    assert main(["hq", "init", "--db", "bogus://x", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "invalid_db_url"
