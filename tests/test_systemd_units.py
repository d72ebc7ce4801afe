"""The units, timer, udev rules and sysusers entry under systemd/, and the
``install-systemd`` command that puts them in place.

systemd-analyze checks the units offline (no running systemd is needed); the
agent's and sync's exposure must stay at or below 2.0 ("OK" or better).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.errors import InvalidInput, Refused
from tillpoints import cli_install
from tillpoints.commands import Context, as_result

SYSTEMD_DIR = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("tillpoints-agent.service", "tillpoints-sync.service", "tillpoints-sync.timer")
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _context(tmp_path: Path, **options: object) -> Context:
    values: dict[str, object] = {"root": str(tmp_path / "root"), "exec_path": None, "force": False}
    values.update(options)
    return Context(
        args=argparse.Namespace(**values),
        state_dir=tmp_path / "state",
        config_path=tmp_path / "agent.toml",
        json=True,
    )


def _run(ctx: Context) -> dict[str, object]:
    (command,) = cli_install.COMMANDS
    return as_result(command.run(ctx))


@pytest.fixture
def executable(tmp_path: Path) -> Path:
    """An executable that exists, for ExecStart= (verify checks that it does)."""
    path = tmp_path / "bin" / "tillpoints"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def installed(tmp_path: Path, executable: Path) -> Path:
    (tmp_path / "root").mkdir()
    _run(_context(tmp_path, exec_path=str(executable)))
    return tmp_path / "root"


def _settings(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists, in order; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def _values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in _settings(path)[section] if k == key]


# ---- systemd-analyze ----


@needs_analyze
def test_every_unit_verifies(installed: Path) -> None:
    units = installed / "etc/systemd/system"
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(units / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on mere warnings (an unknown key, a bad value ignored): none allowed.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def _exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize("name", ["tillpoints-agent.service", "tillpoints-sync.service"])
def test_security_exposure_is_ok_or_better(installed: Path, name: str) -> None:
    exposure = _exposure(installed / "etc/systemd/system" / name)
    assert exposure <= MAX_EXPOSURE, f"{name}: exposure {exposure} > {MAX_EXPOSURE}"


@needs_analyze
def test_timer_calendar_parses() -> None:
    (spec,) = _values(SYSTEMD_DIR / "tillpoints-sync.timer", "Timer", "OnCalendar")
    result = subprocess.run(
        ["systemd-analyze", "calendar", spec], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


# ---- what the units say ----


def test_agent_is_a_notify_daemon_without_network() -> None:
    unit = SYSTEMD_DIR / "tillpoints-agent.service"
    service = dict(_settings(unit)["Service"])
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] and service["TimeoutStopSec"]
    assert service["Restart"] == "on-failure"
    assert service["User"] == service["Group"] == "tillpoints"
    assert service["PrivateNetwork"] == "yes"
    assert service["IPAddressDeny"] == "any"
    assert service["RestrictAddressFamilies"] == "AF_UNIX"
    assert service["StateDirectoryMode"] == "0700"
    assert service["RuntimeDirectoryMode"] == "0750"
    assert service["UMask"] == "0077"
    assert service["DevicePolicy"] == "closed"
    allowed = _values(unit, "Service", "DeviceAllow")
    for device in ("char-ttyACM rw", "char-ttyUSB rw", "char-input r"):
        assert device in allowed


def test_sync_never_sees_the_device_key() -> None:
    unit = SYSTEMD_DIR / "tillpoints-sync.service"
    service = dict(_settings(unit)["Service"])
    assert service["Type"] == "oneshot"
    assert service["User"] == "tillpoints"
    hidden = " ".join(_values(unit, "Service", "InaccessiblePaths"))
    assert "%S/tillpoints/device.key" in hidden


def test_timer_spreads_the_chain_and_catches_up() -> None:
    timer = dict(_settings(SYSTEMD_DIR / "tillpoints-sync.timer")["Timer"])
    assert timer["OnCalendar"]
    assert timer["RandomizedDelaySec"] not in ("", "0")
    assert timer["Persistent"] == "true"
    assert timer["FixedRandomDelay"] == "true"


def test_every_setting_is_explained_in_the_readme() -> None:
    readme = (SYSTEMD_DIR / "README.md").read_text()
    for name in UNITS:
        sections = _settings(SYSTEMD_DIR / name)
        for section in ("Service", "Timer"):
            for key, _ in sections.get(section, []):
                assert f"`{key}=" in readme, f"{name}: {key}= is not explained in README.md"


# ---- udev, sysusers, tmpfiles ----

_UDEV_PAIR = re.compile(r'\s*([A-Z_]+)(\{[^}]+\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*')


def _udev_rules() -> list[list[tuple[str, str, str]]]:
    rules = []
    text = (SYSTEMD_DIR / "60-tillpoints-readers.rules").read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs = []
        for part in line.split('",'):
            part = part if part.endswith('"') else part + '"'
            match = _UDEV_PAIR.fullmatch(part)
            assert match, f"line {number}: cannot parse {part!r}"
            key = match.group(1) + (match.group(2) or "")
            pairs.append((key, match.group(3), match.group(4)))
        rules.append(pairs)
    return rules


def test_udev_rules_parse_and_keep_modemmanager_away() -> None:
    rules = _udev_rules()
    gotos = {value for rule in rules for key, _, value in rule if key == "GOTO"}
    labels = {value for rule in rules for key, _, value in rule if key == "LABEL"}
    assert gotos <= labels
    tty = [rule for rule in rules if ("SUBSYSTEM", "==", "tty") in rule]
    assert any(("ENV{ID_MM_DEVICE_IGNORE}", "=", "1") in rule for rule in tty)
    assert any(("GROUP", "=", "tillpoints") in rule for rule in tty)
    vendors = {value for rule in rules for key, _, value in rule if key == "ATTRS{idVendor}"}
    assert {"0801", "0acd"} <= vendors  # MagTek, ID TECH
    text = (SYSTEMD_DIR / "60-tillpoints-readers.rules").read_text()
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in text


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_and_tmpfiles_create_the_user_and_directories(installed: Path) -> None:
    (installed / "etc/passwd").touch()
    (installed / "etc/group").touch()
    subprocess.run(
        # With --root a bare name is looked up in the sysusers.d folders under it.
        ["systemd-sysusers", f"--root={installed}", "tillpoints.conf"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert (installed / "etc/passwd").read_text().startswith("tillpoints:")
    if shutil.which("systemd-tmpfiles") is None:
        return
    subprocess.run(
        ["systemd-tmpfiles", f"--root={installed}", "--create", "tillpoints.conf"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert (installed / "var/lib/tillpoints").stat().st_mode & 0o777 == 0o700
    assert (installed / "etc/tillpoints").stat().st_mode & 0o777 == 0o750


# ---- install-systemd ----


def test_install_writes_every_file_with_the_executable(tmp_path: Path, executable: Path) -> None:
    (tmp_path / "root").mkdir()
    result = _run(_context(tmp_path, exec_path=str(executable)))
    root = tmp_path / "root"
    expected = {str(root / item.target) for item in cli_install.FILES}
    assert set(result["installed"]) == expected  # type: ignore[arg-type]
    for path in map(Path, expected):
        assert path.is_file()
        assert path.stat().st_mode & 0o777 == 0o644
        assert cli_install.DEFAULT_EXEC not in path.read_text()
    agent = root / "etc/systemd/system/tillpoints-agent.service"
    assert _values(agent, "Service", "ExecStart") == [f"{executable} agent"]
    sync = root / "etc/systemd/system/tillpoints-sync.service"
    assert _values(sync, "Service", "ExecStart") == [f"{executable} sync"]
    for path in (
        "etc/udev/rules.d/60-tillpoints-readers.rules",
        "etc/sysusers.d/tillpoints.conf",
        "etc/systemd/system/tillpoints-sync.timer",
    ):
        assert (root / path).is_file()
    steps = result["next"]
    assert isinstance(steps, list)
    assert any(f"--root={root}" in step and "enable" in step for step in steps)
    json.dumps(result)


def test_install_on_a_live_system_lists_the_next_commands(tmp_path: Path) -> None:
    steps = cli_install.next_steps(Path("/"), list(cli_install.FILES))
    joined = "\n".join(steps)
    for command in (
        "systemctl daemon-reload",
        "systemd-sysusers",
        "udevadm control --reload",
        "systemctl enable --now tillpoints-agent.service tillpoints-sync.timer",
    ):
        assert command in joined
    # The group must exist before udev rules and tmpfiles name it.
    assert steps.index(next(s for s in steps if s.startswith("systemd-sysusers"))) < steps.index(
        "udevadm control --reload"
    )


def test_install_again_is_a_no_op(tmp_path: Path, executable: Path) -> None:
    (tmp_path / "root").mkdir()
    _run(_context(tmp_path, exec_path=str(executable)))
    again = _run(_context(tmp_path, exec_path=str(executable)))
    assert sorted(again["unchanged"]) == sorted(again["installed"])  # type: ignore[type-var]


def test_install_refuses_to_overwrite_a_changed_file(tmp_path: Path, executable: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _run(_context(tmp_path, exec_path=str(executable)))
    agent = root / "etc/systemd/system/tillpoints-agent.service"
    agent.write_text(agent.read_text() + "# a local change\n")
    rules = root / "etc/udev/rules.d/60-tillpoints-readers.rules"
    rules.unlink()

    with pytest.raises(Refused) as refused:
        _run(_context(tmp_path, exec_path=str(executable)))
    assert refused.value.code == "exists"
    assert refused.value.exit_status == 3
    assert refused.value.details["conflicts"] == [str(agent)]
    # Nothing was written: not even the missing file.
    assert not rules.exists()
    assert agent.read_text().endswith("# a local change\n")

    result = _run(_context(tmp_path, exec_path=str(executable), force=True))
    assert rules.is_file()
    assert "# a local change" not in agent.read_text()
    assert str(agent) in result["installed"]  # type: ignore[operator]


def test_install_with_another_executable_is_a_change(tmp_path: Path, executable: Path) -> None:
    (tmp_path / "root").mkdir()
    _run(_context(tmp_path, exec_path=str(executable)))
    with pytest.raises(Refused):
        _run(_context(tmp_path, exec_path="/usr/local/bin/tillpoints"))


@pytest.mark.parametrize(
    "value", ["tillpoints", "/opt/till points/bin/tillpoints", "/opt/%h/tillpoints", "/a\nb"]
)
def test_install_rejects_an_executable_systemd_would_misread(tmp_path: Path, value: str) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(InvalidInput) as invalid:
        _run(_context(tmp_path, exec_path=value))
    assert invalid.value.code == "invalid_exec"
    assert not any((tmp_path / "root").iterdir())


def test_install_rejects_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as invalid:
        _run(_context(tmp_path, root=str(tmp_path / "absent"), exec_path="/x/tillpoints"))
    assert invalid.value.code == "invalid_root"


def test_default_executable_is_an_absolute_path() -> None:
    default = cli_install.default_exec()
    assert default.startswith("/")
    cli_install.check_exec(default)


def test_through_the_command_line_once_registered(tmp_path: Path, executable: Path) -> None:
    from tillpoints import cli

    if "install-systemd" not in {command.name for command in cli._commands()}:
        pytest.skip("install-systemd is not registered in tillpoints.cli yet")
    root = tmp_path / "root"
    root.mkdir()
    argv = ["install-systemd", "--root", str(root), "--exec", str(executable), "--json"]
    assert cli.main(argv) == 0
    (root / "etc/sysusers.d/tillpoints.conf").write_text("changed\n")
    assert cli.main(argv) == 3


# ---- MemoryDenyWriteExecute= ----

# The seccomp filter systemd 252 installs for MemoryDenyWriteExecute=yes
# (src/shared/seccomp-util.c): refuse mmap() asking for write and execute
# together, and any mprotect()/pkey_mprotect() asking for execute, with EPERM.
_ARCH = {  # audit arch, mmap, mprotect, pkey_mprotect
    "x86_64": (0xC000003E, 9, 10, 329),
    "aarch64": (0xC00000B7, 222, 226, 288),
}

_INSTALL_FILTER = textwrap.dedent(
    """
    import ctypes, os, struct, sys
    arch, mmap_nr, mprotect_nr, pkey_nr = (int(x) for x in sys.argv[1:5])
    LD, JEQ, JSET, AND, RET = 0x20, 0x15, 0x45, 0x54, 0x06
    ALLOW, DENY = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    program = [
        (LD, 0, 0, 4), (JEQ, 0, 11, arch),
        (LD, 0, 0, 0), (JEQ, 3, 0, mmap_nr), (JEQ, 5, 0, mprotect_nr), (JEQ, 4, 0, pkey_nr),
        (RET, 0, 0, ALLOW),
        (LD, 0, 0, 32), (AND, 0, 0, 6), (JEQ, 2, 3, 6),
        (LD, 0, 0, 32), (JSET, 0, 1, 4),
        (RET, 0, 0, DENY), (RET, 0, 0, ALLOW),
    ]
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    prog = Prog(len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):
        print("no-seccomp", ctypes.get_errno()); sys.exit(0)
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[5]])
    """
)

_PROBE = textwrap.dedent(
    """
    import ctypes, mmap, os, sqlite3, ssl, sys, tempfile
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print("filter-not-active"); sys.exit(1)
    except OSError:
        pass
    import tillpoints.cli, agent.ledger, sync.till_sync, drivers.hid_reader, drivers.serial_reader
    import evdev, serial
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    key.public_key().verify(key.sign(b"entry"), b"entry")
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(os.path.join(folder, "ledger.db"))
        db.execute("PRAGMA journal_mode=WAL"); db.execute("CREATE TABLE t(x)"); db.commit()
    ssl.create_default_context()
    master, slave = os.openpty()
    serial.Serial(os.ttyname(slave), exclusive=True, timeout=0).close()
    assert ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)() == 7
    print("ok")
    """
)


@pytest.mark.skipif(platform.machine() not in _ARCH, reason="filter written for x86_64/aarch64")
def test_memory_deny_write_execute(tmp_path: Path) -> None:
    """The agent's and sync's code paths run under MemoryDenyWriteExecute=yes:
    start CPython, import everything, sign, open SQLite in WAL mode, a TLS
    context, a serial port, a ctypes callback (libffi)."""
    arch = [str(n) for n in _ARCH[platform.machine()]]
    result = subprocess.run(
        [sys.executable, "-c", _INSTALL_FILTER, *arch, _PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if result.stdout.startswith("no-seccomp"):
        pytest.skip(f"seccomp filters are not allowed here ({result.stdout.strip()})")
    assert result.stdout.strip().endswith("ok"), result.stdout + result.stderr
