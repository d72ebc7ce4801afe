"""Global options before or after the command name (issue 12, docs/contract.md Conventions).

``--json``, ``--state`` and ``--config`` are accepted before the command name, after
it, or between a command and its subcommand, with the same effect, for every command
of the parser. The commands are taken from the parser itself, so a new one cannot
escape the sweep.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tillpoints.cli import _commands, build_parser, main

CLI = (sys.executable, "-m", "tillpoints.cli")
CARD = "9900835840532866"
# Commands that run until stopped (a daemon, a screen, a server) or write outside the
# test's directories: their parsing is swept, they are not run.
LONG_RUNNING = {"agent", "ui", "demo", "bench", "hq serve", "install-systemd"}
# What changes from one run to the next of the same command.
VOLATILE = {"clock"}


def commands() -> Iterator[tuple[list[str], argparse.ArgumentParser, list[list[str]]]]:
    """Every runnable command as (words, its parser, the required arguments of each
    level), walking argparse's own tree."""

    def walk(
        parser: argparse.ArgumentParser, words: list[str], needs: list[list[str]]
    ) -> Iterator[tuple[list[str], argparse.ArgumentParser, list[list[str]]]]:
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not nested:
            yield words, parser, needs
        for action in nested:
            for name, child in action.choices.items():
                yield from walk(child, [*words, name], [*needs, required_arguments(child)])

    yield from walk(build_parser(_commands()), [], [])


def value_for(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type in (int, float):
        return "1"
    return "x"


def required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    given: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings and action.nargs not in ("?", "*"):
            given.append(value_for(action))
        elif action.required:
            given += [action.option_strings[0], value_for(action)]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            first = group._group_actions[0]
            given += [first.option_strings[0], value_for(first)]
    return given


def placements(words: list[str], needs: list[list[str]], flags: list[str]) -> dict[str, list[str]]:
    command = [part for word, need in zip(words, needs, strict=True) for part in (word, *need)]
    found = {"before": [*flags, *command], "after": [*command, *flags]}
    if len(words) > 1:
        found["between"] = [words[0], *needs[0], *flags, *command[1 + len(needs[0]) :]]
    return found


ALL = sorted(" ".join(words) for words, _, _ in commands())


def test_the_sweep_sees_every_declared_command() -> None:
    declared = {command.name for command in _commands()}
    assert declared <= {name for name in ALL} | {" ".join(name.split()[:2]) for name in ALL}, (
        "a declared command is missing from the parser walk"
    )
    assert {"card replace", "log verify", "staff add", "hq report", "hq campaign add"} <= set(ALL)
    assert "hq campaign model fit" in ALL


@pytest.mark.parametrize("name", ALL)
def test_globals_parse_the_same_before_after_and_between(name: str) -> None:
    words, _, needs = next(entry for entry in commands() if " ".join(entry[0]) == name)
    parser = build_parser(_commands())
    flags = ["--json", "--state", "/s", "--config", "/c.toml"]
    parsed = {
        where: parser.parse_args(argv) for where, argv in placements(words, needs, flags).items()
    }
    plain = parser.parse_args(placements(words, needs, [])["after"])
    assert (plain.json, plain.state, plain.config) == (False, None, None)
    for where, args in parsed.items():
        assert (args.json, args.state, args.config) == (True, "/s", "/c.toml"), where
        assert args.command_obj is plain.command_obj, where


@pytest.fixture
def till_dirs(tmp_path: Path) -> dict[str, Path]:
    """A real till (state and configuration) and decoys for the environment: if a
    flag were ignored, the command would see the decoy and answer differently."""
    state, config = tmp_path / "state", tmp_path / "agent.toml"
    config.write_text(f'socket = "{tmp_path}/agent.sock"\n')
    decoy_config = tmp_path / "decoy.toml"
    decoy_config.write_text('nonsense_key = "decoy"\n')
    assert (
        subprocess.run(
            [
                *CLI,
                "--state",
                str(state),
                "--config",
                str(config),
                "init",
                "--store",
                "S1",
                "--till",
                "T1",
            ],
            capture_output=True,
            cwd=REPO,
            check=False,
        ).returncode
        == 0
    )
    return {
        "state": state,
        "config": config,
        "decoy_state": tmp_path / "decoy-state",
        "decoy_config": decoy_config,
        "cwd": tmp_path,
    }


def run_in_process(
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, Any]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TILLPOINTS_HQ_DB", raising=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"{argv}: --json must print exactly one JSON object, got {out!r}"
    assert "Traceback" not in err and "tillpoints: tillpoints:" not in err, err
    answer = json.loads(lines[0])
    assert isinstance(answer, dict)
    return status, {key: value for key, value in answer.items() if key not in VOLATILE}


def test_every_command_has_the_same_effect_with_globals_anywhere(
    till_dirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(till_dirs["cwd"])
    real = {
        "TILLPOINTS_STATE": str(till_dirs["state"]),
        "TILLPOINTS_CONFIG": str(till_dirs["config"]),
    }
    decoy = {
        "TILLPOINTS_STATE": str(till_dirs["decoy_state"]),
        "TILLPOINTS_CONFIG": str(till_dirs["decoy_config"]),
    }
    flags = ["--json", "--state", str(till_dirs["state"]), "--config", str(till_dirs["config"])]
    told_apart = []
    ran = 0
    for words, _, needs in commands():
        name = " ".join(words)
        if name in LONG_RUNNING or name.split()[0] in LONG_RUNNING:
            continue
        # The reference: the same state and configuration, given by the environment.
        reference = run_in_process(
            [*placements(words, needs, [])["after"], "--json"], real, monkeypatch, capsys
        )
        for where, argv in placements(words, needs, flags).items():
            answer = run_in_process(argv, decoy, monkeypatch, capsys)
            assert answer == reference, f"{name} with the options {where}: {answer} != {reference}"
        ran += 1
        unflagged = run_in_process(
            [*placements(words, needs, [])["after"], "--json"], decoy, monkeypatch, capsys
        )
        if unflagged != reference:
            told_apart.append(name)
    assert ran >= 30
    # The decoys matter: were --state or --config ignored, these would have failed.
    assert {"balance", "log verify", "staff list", "status", "decode", "qr"} <= set(told_apart)


def test_the_issue_reproductions_as_a_real_process(till_dirs: dict[str, Path]) -> None:
    state, config = str(till_dirs["state"]), str(till_dirs["config"])

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *argv],
            capture_output=True,
            text=True,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
            check=False,
        )

    # --json before the command name: JSON on success too, not text.
    balance = run("--json", "--state", state, "balance", "--member", CARD)
    assert balance.returncode == 0, balance.stderr
    assert json.loads(balance.stdout)["card"] == CARD
    # --state and --config after the command, for every command (decode too).
    decoded = run("decode", "--config", config, "--state", state, "--json")
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout) == {"scans": []}
    verified = run("log", "verify", "--state", state, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    # A usage error names the command once, never "tillpoints: tillpoints: ...".
    missing = run("--json", "card", "replace", "--member", CARD)
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["error"] == "invalid_usage"
    assert missing.stderr.startswith("tillpoints: card replace: ")
    assert "tillpoints: tillpoints" not in missing.stderr
    unknown = run("frobnicate")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.count("tillpoints") == 1, unknown.stderr
