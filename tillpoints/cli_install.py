"""``tillpoints install-systemd``: put the units, timer, udev rules and sysusers entry
in place (``systemd/README.md`` says what each does and why each line is there).

It only writes files: into ``--root`` (default ``/``), with the executable path of
``--exec`` substituted for ``/opt/tillpoints/bin/tillpoints``. It never runs
``systemctl`` or ``udevadm``; it returns the commands to run next, so that it also
works on an image being built and on a machine without a running systemd.

Files a person changed are not overwritten without ``--force`` (exit 3,
``exists``), and every conflict is found before anything is written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from agent.errors import InvalidInput, LedgerError, Refused
from tillpoints.commands import Command, Context, Result

# The path written in the files under systemd/; --exec replaces it everywhere.
DEFAULT_EXEC = "/opt/tillpoints/bin/tillpoints"
# What systemd takes in ExecStart= without quoting or %-escaping.
_SAFE_EXEC = re.compile(r"/[A-Za-z0-9._+@/-]+")


@dataclass(frozen=True)
class UnitFile:
    source: str  # name under systemd/
    target: str  # path under --root

    @property
    def name(self) -> str:
        return Path(self.target).name


# Local additions by the administrator live in /etc; /usr belongs to the
# distribution's package manager (and is read-only on image-based systems).
FILES = (
    UnitFile("tillpoints-agent.service", "etc/systemd/system/tillpoints-agent.service"),
    UnitFile("tillpoints-sync.service", "etc/systemd/system/tillpoints-sync.service"),
    UnitFile("tillpoints-sync.timer", "etc/systemd/system/tillpoints-sync.timer"),
    UnitFile("60-tillpoints-readers.rules", "etc/udev/rules.d/60-tillpoints-readers.rules"),
    UnitFile("tillpoints.conf", "etc/sysusers.d/tillpoints.conf"),
    UnitFile("tillpoints.tmpfiles.conf", "etc/tmpfiles.d/tillpoints.conf"),
    UnitFile("tillpoints.modules-load.conf", "etc/modules-load.d/tillpoints.conf"),
)
ENABLE = ("tillpoints-agent.service", "tillpoints-sync.timer")


def source_dir() -> Traversable:
    """Where the files ship: package data of an installed wheel
    (``tillpoints/systemd_units``), else ``systemd/`` beside the package in a checkout."""
    packaged = resources.files("tillpoints").joinpath("systemd_units")
    if packaged.joinpath(FILES[0].source).is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[1] / "systemd"
    if (checkout / FILES[0].source).is_file():
        return checkout
    raise LedgerError("missing_units", "the systemd unit files are not installed with tillpoints")


def default_exec() -> str:
    """The console script running now, else the one beside this interpreter, else
    the documented location."""
    running = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if running is not None and running.name == "tillpoints" and running.is_file():
        return str(running.absolute())
    beside = Path(sys.executable).with_name("tillpoints")
    if sys.executable and beside.is_file():
        return str(beside)
    return DEFAULT_EXEC


def check_exec(value: str) -> str:
    if not _SAFE_EXEC.fullmatch(value):
        raise InvalidInput(
            "invalid_exec",
            "exec: must be an absolute path of letters, digits and . _ + @ / - "
            f"(no spaces or %), not {value[:80]!r}",
        )
    return value


def render(text: str, exec_path: str) -> str:
    return text.replace(DEFAULT_EXEC, exec_path)


def next_steps(root: Path, written: list[UnitFile]) -> list[str]:
    """The commands that make the files take effect. sysusers first: the udev
    rules and the tmpfiles entry name the tillpoints group."""
    units = " ".join(ENABLE)
    if root == Path("/"):
        steps = [
            "systemd-sysusers /etc/sysusers.d/tillpoints.conf",
            "systemd-tmpfiles --create /etc/tmpfiles.d/tillpoints.conf",
            "systemctl restart systemd-modules-load.service",
            "udevadm control --reload",
            "udevadm trigger --action=change --subsystem-match=tty --subsystem-match=input",
            "systemctl daemon-reload",
            f"systemctl enable --now {units}",
        ]
        if any(item.source.endswith((".service", ".timer")) for item in written):
            # Running units keep their old definition until restarted.
            steps.append("systemctl try-restart tillpoints-agent.service")
        return steps
    # An image or a chroot: nothing runs there now; prepare it for its first boot.
    return [
        f"systemd-sysusers --root={root}",
        f"systemd-tmpfiles --root={root} --create",
        f"systemctl --root={root} enable {units}",
    ]


def install(root: Path, exec_path: str, force: bool) -> Result:
    source = source_dir()
    plan: list[tuple[UnitFile, Path, bytes]] = []
    conflicts: list[str] = []
    unchanged: list[str] = []
    for item in FILES:
        text = render(source.joinpath(item.source).read_text(encoding="utf-8"), exec_path)
        content = text.encode("utf-8")
        target = root / item.target
        if target.is_file() and target.read_bytes() == content:
            unchanged.append(str(target))
            continue
        if target.exists() and not force:
            conflicts.append(str(target))
        plan.append((item, target, content))
    if conflicts:
        raise Refused(
            "exists",
            f"{conflicts[0]} exists and differs; nothing was written "
            f"({len(conflicts)} file(s) differ); pass --force to replace them",
            {"conflicts": conflicts},
        )
    for _, target, content in plan:
        _write_atomically(target, content)
    written = [item for item, _, _ in plan]
    return {
        "installed": [str(root / item.target) for item in FILES],
        "unchanged": unchanged,
        "exec": exec_path,
        "next": next_steps(root, written),
    }


def _write_atomically(target: Path, content: bytes) -> None:
    """Write beside the target and rename over it: udev and systemd never read a
    half-written file, and a crash leaves the old one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="/", help="install under this directory (default /)")
    parser.add_argument(
        "--exec",
        dest="exec_path",
        help=f"the tillpoints executable the units run (default: this one, or {DEFAULT_EXEC})",
    )
    parser.add_argument("--force", action="store_true", help="replace files that differ")


def _install_systemd(ctx: Context) -> Result:
    args = ctx.args
    exec_path = check_exec(args.exec_path or default_exec())
    root = Path(args.root)
    if not root.is_absolute():
        raise InvalidInput("invalid_root", f"root: must be an absolute path, not {args.root!r}")
    if not root.is_dir():
        raise InvalidInput("invalid_root", f"root: {args.root} is not a directory")
    return install(root, exec_path, args.force)


def _render(result: Result) -> str:
    lines = ["installed:"] + [f"  {path}" for path in result["installed"]]
    lines += ["", "now run:"] + [f"  {step}" for step in result["next"]]
    return "\n".join(lines)


COMMANDS = [
    Command(
        "install-systemd",
        "write the systemd units, timer, udev rules and sysusers entry",
        _install_systemd,
        _arguments,
        _render,
    ),
]
