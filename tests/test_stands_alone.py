"""The repository stands alone: a clone with nothing beside it runs its own tests, and its
documents link only to its own files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import REPO

TEXT = {".py", ".md", ".toml", ".cfg", ".conf", ".service", ".timer", ".rules", ".tcss", ""}
# A path that leaves the repository for a sibling folder, written in any of the ways
# code or a document would write it.
OUTSIDE = re.compile(r"\.\./shared\b|parents?\[\d\]\.parent|parent\.parent /|/work/")
# Markdown links: [text](target), without the web ones.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _files() -> list[Path]:
    """The repository's own files: tracked, or new and not ignored (as a clone has them)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    paths = [REPO / name for name in listed]
    return [p for p in paths if p.is_file() and p.suffix in TEXT and p.stat().st_size < 1_000_000]


def test_nothing_reaches_outside_the_repository() -> None:
    offenders = []
    for path in _files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and path.name != "test_stands_alone.py":
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_document_link_points_into_the_repository() -> None:
    broken = []
    for path in _files():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address, or an anchor in the same page
            resolved = (path.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert broken == []
