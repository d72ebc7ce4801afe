"""Issue 12, the QR secret: whoever holds the chain's QR secret can mint a valid
dynamic member code for any card (drivers/codes.py). It is no longer in agent.toml,
which the POS group reads: HQ hands it over in the signed registration answer and
the till keeps it in its 0600 secrets file. Real HQ process, real HTTP."""

from __future__ import annotations

import base64
import json
import queue
import stat
import subprocess
import sys
import time
from pathlib import Path

from agent.till_secrets import SECRETS_FILE, TillSecrets
from drivers.codes import make_dynamic_code
from sync.hq.devices import chain_qr, hq_key
from sync.hq.stores import open_store
from tests.secrets_helpers import give_qr_secret
from tests.sync_helpers import REPO, cli, make_till, register_till, running_hq
from tests.test_agent_daemon import collect_events, next_event
from tillpoints.cli import main
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill

CARD = "9900835840532866"


def _enrolled(state: Path) -> str:
    code, member = cli(state, "enroll", "--name", "Ann", "--phone", "0612345678", "--card", CARD)
    assert code == 0, member
    return str(member["member_id"])


def _earn(state: Path, member: str, receipt: str) -> tuple[int, dict[str, object]]:
    return cli(state, "earn", "--member", member, "--receipt", receipt, "--amount", "5.00")


def test_a_qr_secret_in_agent_toml_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('store = "S001"\nqr_secret = "a-chain-secret-for-tests"\n')
    state = make_till(tmp_path, "till")
    code, result = cli(state, "--config", str(config), "balance", "--member", CARD)
    assert (code, result["error"]) == (2, "invalid_config")
    message = str(result["message"])
    assert "qr_secret" in message and "secrets.json" in message
    assert "--qr-secret-file" in message


def test_registration_brings_the_secret_and_the_pos_group_finds_nothing(
    tmp_path: Path,
) -> None:
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", hq_url, "--json"]) == 0
    state = make_till(tmp_path, "till")
    _enrolled(state)
    # Not registered: no QR secret, dynamic codes are off.
    code, result = cli(state, "qr", "--member", CARD)
    assert (code, result["error"]) == (1, "qr_not_configured")
    assert TillSecrets(state).qr() is None
    # What an agent.toml holds now, and what a POS-group user could try with it.
    config = tmp_path / "agent.toml"
    config.write_text(f'store = "S001"\ntill = "T01"\nsocket = "{tmp_path}/agent.sock"\n')
    hq = open_store(hq_url)
    try:
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            register_till(server, hq, state)
        secret = base64.b64decode(chain_qr(hq, hq_key(hq)))
    finally:
        hq.close()
    assert TillSecrets(state).qr() == secret
    assert stat.S_IMODE((state / SECRETS_FILE).stat().st_mode) == 0o600
    assert secret not in config.read_bytes()
    assert base64.b64encode(secret) not in config.read_bytes()

    # The POS group's best guess (agent.toml's bytes) mints nothing the till accepts.
    forged, _ = make_dynamic_code(CARD, config.read_bytes(), time.time())
    code, result = _earn(state, forged, "F1")
    assert (code, result["error"]) == (2, "invalid_code")

    # The counter checks the member's phone code after registration.
    code, shown = cli(state, "qr", "--member", CARD)
    assert code == 0 and str(shown["payload"]).startswith("TP1.")
    phone, _ = make_dynamic_code(CARD, secret, time.time())
    assert shown["payload"] == phone
    code, earned = _earn(state, phone, "Q1")
    assert (code, earned["points"]) == (0, 5)
    code, balance = cli(state, "--config", str(config), "balance", "--member", phone)
    assert code == 0, balance


def test_hq_hands_over_a_secret_the_chain_already_used(tmp_path: Path) -> None:
    old = tmp_path / "old-qr-secret"
    old.write_text("the-chain-secret-of-2025\n")
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    args = ["hq", "init", "--db", hq_url, "--json"]
    assert main([*args, "--qr-secret-file", str(old)]) == 0
    kept = tmp_path / "hq-signing.qr-secret"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # The same secret again is fine; another one is refused, a short one too.
    assert main([*args, "--qr-secret-file", str(old)]) == 0
    other = tmp_path / "other"
    other.write_text("another-chain-secret-here\n")
    assert main([*args, "--qr-secret-file", str(other)]) == 3
    other.write_text("short\n")
    assert main([*args, "--qr-secret-file", str(other)]) == 2
    assert kept.read_bytes() == b"the-chain-secret-of-2025"

    state = make_till(tmp_path, "till")
    _enrolled(state)
    hq = open_store(hq_url)
    try:
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            register_till(server, hq, state)
    finally:
        hq.close()
    # A phone that makes codes under the chain's old secret still works.
    phone, _ = make_dynamic_code(CARD, b"the-chain-secret-of-2025", time.time())
    code, earned = _earn(state, phone, "Q1")
    assert (code, earned["points"]) == (0, 5)


def test_the_agents_reader_checks_phone_codes_after_registration(tmp_path: Path) -> None:
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", hq_url, "--json"]) == 0
    root = tmp_path / "till"
    root.mkdir()
    till = SimulatedTill(root)  # Ann holds DEMO_CARD
    hq = open_store(hq_url)
    try:
        secret = base64.b64decode(chain_qr(hq, hq_key(hq)))
        phone, _ = make_dynamic_code(DEMO_CARD, secret, time.time())
        till.start()
        events: queue.Queue[tuple[str, dict]] = queue.Queue()
        collect_events(till.client, events)
        next_event(events, "hello")
        till.swipe(f"{phone}\r".encode())  # not registered yet: dynamic codes are off
        assert next_event(events, "scan")["error"] == "invalid_code"
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            register_till(server, hq, till.state)  # while the agent runs
        phone, _ = make_dynamic_code(DEMO_CARD, secret, time.time())
        till.swipe(f"{phone}\r".encode())
        scan = next_event(events, "scan")
        assert (scan["kind"], scan["card"]) == ("member", DEMO_CARD), scan
        assert scan["member"]["name"] == "Ann"
        forged, _ = make_dynamic_code(DEMO_CARD, b"a-guess-at-the-chain-secret", time.time())
        till.swipe(f"{forged}\r".encode())
        assert next_event(events, "scan")["error"] == "invalid_code"
    finally:
        till.close()
        hq.close()


def test_decode_checks_dynamic_codes_with_the_tills_secret(tmp_path: Path) -> None:
    state = make_till(tmp_path, "till")
    secret = b"a-chain-secret-for-decode"
    phone, _ = make_dynamic_code(CARD, secret, time.time())

    def decode() -> list[dict[str, str]]:
        command = [sys.executable, "-m", "tillpoints.cli", "--state", str(state), "--config", "/x"]
        done = subprocess.run(
            [*command, "decode", "--json"],
            input=f"{phone}\r".encode(),
            capture_output=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )
        return list(json.loads(done.stdout)["scans"])

    assert decode()[0]["error"] == "invalid_code"  # not registered: no secret
    give_qr_secret(state, secret)
    assert decode() == [{"kind": "member", "card": CARD, "source": "qr_dynamic"}]
