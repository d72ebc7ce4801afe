"""Issue 12, the secrets: what a thief with a till's disk, a member of the POS
group, or a reader of HQ's database can get, reproduced on real files, a real HQ
process and real HTTP.

- Phones: a till holds phone keys only of its own store's members, never a digit
  of a number; the keys are scrypt under the chain's pepper, which lives in the
  state directory's 0600 secrets file (never in agent.toml).
- HQ's signing key: a 0600 file beside the database (or named by --key /
  $TILLPOINTS_HQ_KEY / $TILLPOINTS_HQ_STATE), never in a table; a database that
  held it has it moved out (migration 006_key_file).
- Every SQLite file either side makes is 0600, -wal and -shm included.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import fields
from agent.errors import Refused
from agent.fields import PHONE_COST
from agent.keys import private_key_pem, public_key_text, read_private_key
from agent.ledger import Ledger
from agent.till_secrets import SECRETS_FILE, TillSecrets
from sync.client import HQClient, Signer
from sync.hq.devices import chain_phone, hq_key
from sync.hq.stores import open_store
from sync.till_register import transport_key
from tests.sync_helpers import REPO, cli, make_till, pg_schema, register_till, running_hq
from tillpoints.cli import main

ANN, BO = "0612345678", "0698765432"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual 022 umask, under which a plain open() makes a world-readable file."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def on_disk(*paths: Path) -> bytes:
    """Every byte of the files, -wal and -shm included: what a thief copies."""
    data = b""
    for path in paths:
        for side in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if side.exists():
                data += side.read_bytes()
    return data


# -- phone numbers on a till's disk ----------------------------------------------------


def test_a_till_holds_phone_keys_of_its_own_store_only_and_no_digits(
    tmp_path: Path, open_umask: None
) -> None:
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", hq_url, "--json"]) == 0
    hq = open_store(hq_url)
    try:
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            tills = {
                name: make_till(tmp_path, name, store, till)
                for name, store, till in (
                    ("a1", "S001", "T01"),
                    ("a2", "S001", "T02"),
                    ("b1", "S002", "T01"),
                )
            }
            for state in tills.values():
                register_till(server, hq, state)
            code, ann = cli(tills["a1"], "enroll", "--name", "Ann", "--phone", ANN)
            assert code == 0, ann
            code, bo = cli(tills["b1"], "enroll", "--name", "Bo", "--phone", BO)
            assert code == 0, bo
            for name in ("a1", "b1", "a2", "a1", "b1"):
                code, synced = cli(tills[name], "sync")
                assert code == 0, synced
        chain = chain_phone(hq, hq_key(hq))
    finally:
        hq.close()

    pepper = fields.PhonePepper(base64.b64decode(chain["pepper"]), chain["cost"])
    ann_key = fields.phone_key(fields.phone(ANN), pepper)
    bo_key = fields.phone_key(fields.phone(BO), pepper)
    # The key is scrypt at the chain's cost, not a quick keyed hash.
    assert chain["cost"] == PHONE_COST == 14

    # A thief with S001/T01's disk: Bo (of S002) is known by name for the counter,
    # but neither his phone key nor any digit of his number is on the disk.
    a1 = tills["a1"]
    data = on_disk(a1 / "ledger.db")
    # Hashes and signatures are long hex runs, where any four digits turn up by
    # chance: the last four are looked for everywhere else (and in every column below).
    assert bo_key.encode() not in data and BO.encode() not in data
    assert BO[-4:].encode() not in re.sub(rb"[0-9a-f]{16,}", b"", data)
    conn = sqlite3.connect(a1 / "ledger.db")
    try:
        rows = conn.execute(
            "SELECT member_id, phone_key, phone_last4 FROM hq_members ORDER BY member_id"
        ).fetchall()
        assert (bo["member_id"], None, None) in rows
        assert (ann["member_id"], ann_key, None) in rows
        for (body,) in conn.execute("SELECT body FROM journal WHERE kind = 'enrol'"):
            assert "phone_last4" not in json.loads(body)["member"]
    finally:
        conn.close()

    # The store's other till finds Ann by phone; S002 does not, and finds Bo.
    code, found = cli(tills["a2"], "lookup", "--phone", ANN)
    assert (code, found["member_id"], found["card"]) == (0, ann["member_id"], ann["card"])
    code, refused = cli(tills["b1"], "lookup", "--phone", ANN)
    assert (code, refused["error"]) == (3, "unknown_phone")
    code, found = cli(tills["b1"], "lookup", "--phone", BO)
    assert (code, found["member_id"]) == (0, bo["member_id"])

    # The pepper is in the 0600 secrets file of the 0700 state directory, nowhere else.
    secrets_file = a1 / SECRETS_FILE
    assert mode(a1) == 0o700 and mode(secrets_file) == 0o600
    stored = json.loads(secrets_file.read_text())["phone"]
    assert stored == [{"pepper": chain["pepper"], "cost": chain["cost"], "from": "hq"}]
    assert chain["pepper"].encode() not in data


def test_another_stores_member_is_found_online_at_hq_within_a_rate_limit(
    tmp_path: Path,
) -> None:
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", hq_url, "--json"]) == 0
    hq = open_store(hq_url)
    try:
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            a1, b1 = make_till(tmp_path, "a1", "S001"), make_till(tmp_path, "b1", "S002")
            for state in (a1, b1):
                register_till(server, hq, state)
            code, ann = cli(a1, "enroll", "--name", "Ann", "--phone", ANN)
            assert code == 0 and cli(a1, "sync")[0] == 0
            code, found = cli(b1, "lookup", "--phone", ANN)
            assert (code, found) == (
                0,
                {"member_id": ann["member_id"], "name": "Ann", "card": ann["card"]},
            )
            code, missing = cli(b1, "lookup", "--phone", BO)
            assert (code, missing["error"]) == (3, "unknown_phone")
            # The agent (no network under its unit) answers from the till alone.
            ledger = Ledger(b1)
            try:
                with pytest.raises(Refused) as refused:
                    ledger.lookup(ANN)
                assert "by card" in refused.value.message
            finally:
                ledger.close()

            device = Ledger(b1)
            try:
                device_id = device.device_id
            finally:
                device.close()
            client = HQClient(server.url, signer=Signer(device_id, transport_key(b1)))
            target = f"/v1/devices/{device_id}/phone-lookup"
            try:
                for hostile in ({}, {"phone_key": "12"}, {"phone_key": ANN}, [1]):
                    reply = client.post(target, hostile)
                    assert (reply.status, reply.body["error"]) == (400, "invalid_phone_key")
                unsigned = requests.post(
                    server.url + target, json={"phone_key": "0" * 64}, timeout=5
                )
                assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unauthenticated")
                answers = [client.post(target, {"phone_key": f"{n:064x}"}) for n in range(28)]
                assert {reply.status for reply in answers} == {404}  # 2 + 28: the limit
                limited = client.post(target, {"phone_key": "f" * 64})
                assert (limited.status, limited.body["error"]) == (429, "rate_limited")
            finally:
                client.close()
            code, later = cli(b1, "lookup", "--phone", ANN)
            assert (code, later["error"]) == (3, "rate_limited")
        with hq.read() as tx:
            recorded = tx.all("SELECT device, member_id FROM phone_lookups ORDER BY at")
        assert len(recorded) == 30 and recorded[0] == (device_id, ann["member_id"])
    finally:
        hq.close()


def test_one_key_costs_a_thief_tens_of_milliseconds(tmp_path: Path) -> None:
    """The brute force the issue describes: with the pepper, every candidate number
    costs one scrypt at the chain's cost (measured here: docs/sync.md)."""
    pepper = fields.PhonePepper(os.urandom(32))
    best = min(_timed(lambda n=n: fields.phone_key(f"06{n:08d}", pepper)) for n in range(3))
    assert best > 0.005  # at least 5 ms each: 4e9 numbers are CPU-years, not seconds


def _timed(action: object) -> float:
    assert callable(action)
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def test_a_member_enrolled_before_registration_is_still_found(tmp_path: Path) -> None:
    hq_url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", hq_url, "--json"]) == 0
    state = make_till(tmp_path, "till")
    own = TillSecrets(state).phone()
    assert len(own) == 1 and len(own[0].pepper) == 32  # a pepper of the till's own
    other = make_till(tmp_path, "other")
    assert TillSecrets(other).phone() != own  # nothing shared, nothing default
    code, early = cli(state, "enroll", "--name", "Ann", "--phone", ANN)
    assert code == 0
    hq = open_store(hq_url)
    try:
        with running_hq(hq_url, tmp_path / "hq.log") as server:
            register_till(server, hq, state)
    finally:
        hq.close()
    peppers = TillSecrets(state).phone()
    assert len(peppers) == 2 and peppers[1] == own[0]
    code, found = cli(state, "lookup", "--phone", ANN)
    assert (code, found["member_id"]) == (0, early["member_id"])
    code, again = cli(state, "enroll", "--name", "Ann", "--phone", ANN)
    assert (code, again["error"]) == (3, "duplicate_phone")


def test_a_phone_pepper_in_agent_toml_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('store = "S001"\nphone_pepper = "chain-secret"\n')
    state = make_till(tmp_path, "till")
    code, result = cli(state, "--config", str(config), "lookup", "--phone", ANN)
    assert (code, result["error"]) == (2, "invalid_config")
    assert "phone_pepper" in result["message"] and "secrets.json" in result["message"]


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    state = make_till(tmp_path, "till")
    os.chmod(state / SECRETS_FILE, 0o644)
    code, result = cli(state, "enroll", "--name", "Ann", "--phone", ANN)
    assert (code, result["error"]) == (1, "insecure_secrets")
    ledger = Ledger(state)
    try:
        assert ledger.store.conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 0
    finally:
        ledger.close()


def test_a_till_made_before_the_secrets_file_gets_one_of_its_own(tmp_path: Path) -> None:
    state = make_till(tmp_path, "till")
    (state / SECRETS_FILE).unlink()
    code, _ = cli(state, "enroll", "--name", "Ann", "--phone", ANN)
    assert code == 0 and mode(state / SECRETS_FILE) == 0o600


def test_old_downloads_forget_digits_and_other_stores_keys(tmp_path: Path) -> None:
    """Migration 006_forget_phones on a till that an earlier version filled."""
    state = make_till(tmp_path, "till")
    db = state / "ledger.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "INSERT INTO hq_members VALUES ('m-1', 'Ann', 'k-own', '5678', 3, 'S001');"
        "INSERT INTO hq_members VALUES ('m-2', 'Bo', 'k-other', '5432', 4, 'S002');"
        "DELETE FROM migrations WHERE name = '006_forget_phones';"
    )
    conn.close()
    Ledger(state).close()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT member_id, phone_key, phone_last4 FROM hq_members").fetchall()
    conn.close()
    assert sorted(rows) == [("m-1", "k-own", None), ("m-2", None, None)]
    data = on_disk(db)
    assert b"k-other" not in data and b"5432" not in data


# -- HQ's signing key ------------------------------------------------------------------


def test_hq_init_keeps_the_key_in_a_0600_file_not_in_the_database(
    tmp_path: Path, open_umask: None
) -> None:
    db = tmp_path / "hq.db"
    url = f"sqlite:///{db}"
    done = subprocess.run(
        [sys.executable, "-m", "tillpoints.cli", "hq", "init", "--db", url, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    key_file = tmp_path / "hq-signing.key"
    assert result["key"] == str(key_file)
    assert mode(key_file) == 0o600
    for path in (db, tmp_path / "hq.db-wal", tmp_path / "hq.db-shm"):
        assert not path.exists() or mode(path) == 0o600, path
    key = read_private_key(key_file)
    assert result["hq_public_key"] == public_key_text(key.public_key())
    # Whoever reads or copies hq.db gets no key to sign with.
    pem_body = b"".join(private_key_pem(key).splitlines()[1:-1])
    assert b"PRIVATE KEY" not in on_disk(db) and pem_body not in on_disk(db)
    with running_hq(url, tmp_path / "hq.log") as server:
        health = requests.get(f"{server.url}/v1/health", timeout=5).json()
        assert health["hq_public_key"] == result["hq_public_key"]
        assert mode(tmp_path / "hq.db-wal") == mode(tmp_path / "hq.db-shm") == 0o600


def test_hq_serve_refuses_a_missing_foreign_or_readable_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", url, "--json"]) == 0
    key_file = tmp_path / "hq-signing.key"
    os.chmod(key_file, 0o640)
    assert _serve_error(url, tmp_path) == "hq_key_insecure"
    key_file.unlink()
    assert _serve_error(url, tmp_path) == "hq_key_missing"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, private_key_pem(Ed25519PrivateKey.generate()))
    os.close(fd)
    assert _serve_error(url, tmp_path) == "hq_key_mismatch"


def _serve_error(url: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tillpoints.cli",
            "hq",
            "serve",
            "--db",
            url,
            "--port",
            "1",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    return str(json.loads(done.stdout)["error"])


def _old_hq(url: str, key: Ed25519PrivateKey) -> None:
    """A database as the version before issue 12 made it: the key in hq_meta."""
    store = open_store(url)
    try:
        with store.write() as tx:
            tx.run("DELETE FROM hq_migrations WHERE name = '006_key_file'")
            tx.run("DELETE FROM hq_meta")
            tx.run(
                "INSERT INTO hq_meta (key, value) VALUES ('signing_key', ?)",
                (private_key_pem(key).decode(),),
            )
    finally:
        store.close()


def test_migration_moves_the_key_out_of_an_sqlite_database(tmp_path: Path) -> None:
    db = tmp_path / "hq.db"
    url = f"sqlite:///{db}"
    key = Ed25519PrivateKey.generate()
    _old_hq(url, key)
    assert b"PRIVATE KEY" in on_disk(db)
    with running_hq(url, tmp_path / "hq.log") as server:
        health = requests.get(f"{server.url}/v1/health", timeout=5).json()
    assert health["hq_public_key"] == public_key_text(key.public_key())
    assert mode(tmp_path / "hq-signing.key") == 0o600
    assert (
        public_key_text(read_private_key(tmp_path / "hq-signing.key").public_key())
        == (health["hq_public_key"])
    )
    assert b"PRIVATE KEY" not in on_disk(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT 1 FROM hq_meta WHERE key = 'signing_key'").fetchone() is None
        assert conn.execute(
            "SELECT 1 FROM hq_migrations WHERE name = '006_key_file'"
        ).fetchone() == (1,)
    finally:
        conn.close()


def test_migration_refuses_to_overwrite_another_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hq.db"
    _old_hq(url, Ed25519PrivateKey.generate())
    fd = os.open(tmp_path / "hq-signing.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, private_key_pem(Ed25519PrivateKey.generate()))
    os.close(fd)
    code = main(["hq", "verify", "--db", url, "--json"])
    assert code == 1
    conn = sqlite3.connect(tmp_path / "hq.db")
    try:  # nothing changed: the key is still where it was
        assert conn.execute("SELECT 1 FROM hq_meta WHERE key = 'signing_key'").fetchone()
    finally:
        conn.close()


def test_postgresql_keeps_the_key_in_the_state_directory(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILLPOINTS_HQ_STATE", str(tmp_path / "hq-state"))
    with pg_schema(pg_database) as url:
        assert main(["hq", "init", "--db", url, "--json"]) == 0
        store = open_store(url)
        try:
            public = public_key_text(hq_key(store).public_key())
            with store.read() as tx:
                rows = tx.all("SELECT key, value FROM hq_meta")
        finally:
            store.close()
        assert not any("PRIVATE KEY" in str(value) for _, value in rows)
        (key_file,) = (tmp_path / "hq-state").glob("hq-*.key")
        assert mode(key_file) == 0o600 and mode(key_file.parent) == 0o700
        with running_hq(
            url, tmp_path / "hq.log", env={"TILLPOINTS_HQ_STATE": str(key_file.parent)}
        ) as server:
            assert (
                requests.get(f"{server.url}/v1/health", timeout=5).json()["hq_public_key"] == public
            )


def test_postgresql_migration_moves_the_key_to_the_given_file(
    tmp_path: Path, pg_database: str
) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "keys" / "hq.key"
    with pg_schema(pg_database) as url:
        _old_hq(url, key)
        assert main(["hq", "init", "--db", url, "--key", str(key_file), "--json"]) == 0
        assert mode(key_file) == 0o600
        assert public_key_text(read_private_key(key_file).public_key()) == (
            public_key_text(key.public_key())
        )
        store = open_store(url, key_file)
        try:
            with store.read() as tx:
                assert tx.one("SELECT 1 FROM hq_meta WHERE key = 'signing_key'") is None
        finally:
            store.close()


def test_every_sqlite_file_of_a_till_is_0600(tmp_path: Path, open_umask: None) -> None:
    state = make_till(tmp_path, "till")
    code, _ = cli(state, "enroll", "--name", "Ann", "--phone", ANN)
    assert code == 0
    ledger = Ledger(state)  # holds the WAL open
    try:
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "device.key", SECRETS_FILE):
            assert mode(state / name) == 0o600, name
    finally:
        ledger.close()


def test_an_existing_readable_ledger_is_narrowed(tmp_path: Path) -> None:
    state = make_till(tmp_path, "till")
    os.chmod(state / "ledger.db", 0o644)
    Ledger(state).close()
    assert mode(state / "ledger.db") == 0o600


def test_the_key_file_can_be_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "secret" / "hq-signing.pem"
    monkeypatch.setenv("TILLPOINTS_HQ_KEY", str(key_file))
    url = f"sqlite:///{tmp_path}/hq.db"
    assert main(["hq", "init", "--db", url, "--json"]) == 0
    assert mode(key_file) == 0o600 and not (tmp_path / "hq-signing.key").exists()
    public = public_key_text(read_private_key(key_file).public_key())
    with running_hq(url, tmp_path / "hq.log") as server:  # the process inherits the variable
        assert requests.get(f"{server.url}/v1/health", timeout=5).json()["hq_public_key"] == public
    monkeypatch.delenv("TILLPOINTS_HQ_KEY")
    assert _serve_error(url, tmp_path) == "hq_key_missing"
