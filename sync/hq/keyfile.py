"""HQ's signing key, kept in a file of its own and never in the database.

Every till trusts what this key signs (registration answers, acks, heads and
deltas), so it lives in a file only HQ's user can read (0600): a copy of
``hq.db``, a backup of it, or read access to the tables the reports use must not
hand it over. The database records only the *public* key (``hq_meta``
``public_key``), so HQ can check that the file it was given is this HQ's key.

Where the file is, first match wins:

1. ``--key FILE`` (``hq init``, ``hq serve``, ``hq simulate``), or ``$TILLPOINTS_HQ_KEY``;
2. for SQLite, beside the database: ``hq.db`` -> ``hq-signing.key``;
3. for PostgreSQL, ``hq-ID.key`` in ``$TILLPOINTS_HQ_STATE``, else
   ``$XDG_STATE_HOME/tillpoints``, else ``~/.local/state/tillpoints`` (created
   0700), ID being the key's id (12 hex digits of the SHA-256 of its public key)
   as the database records it, so one machine can serve several databases.

An HSM: every signature HQ makes goes through the object ``load_key`` returns
(its ``sign(data)`` and ``public_key()``); Ed25519 signing is deterministic, so a
PKCS#11 object with those two methods can stand in for the file (docs/sync.md).

The chain's QR secret is derived from the key (``sync.hq.devices.chain_qr``)
unless an operator gave one to ``hq init --qr-secret-file`` (a chain whose members'
phones already make codes under an older secret): it is kept beside the key file,
``hq-signing.key`` -> ``hq-signing.qr-secret``, 0600 too (``qr_secret_path``).

Migration ``006_key_file`` moves the key of a database made by an earlier version
(``hq_meta`` ``signing_key``) out to the file and deletes it from the table.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.keys import (
    device_id_for,
    load_public_key,
    private_key_pem,
    public_key_text,
    readable_by_others,
    write_secret,
)
from sync.errors import SyncError
from sync.hq.db import HQStore, Tx

KEY_ENV, STATE_ENV = "TILLPOINTS_HQ_KEY", "TILLPOINTS_HQ_STATE"
MIGRATION = "006_key_file"
MIGRATION_LOCK = 0x7470_6871  # sync.hq.schema's: one migrator at a time


def state_dir() -> Path:
    """Where a PostgreSQL HQ keeps its key by default."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tillpoints"


def key_path(store: HQStore, key_id: str) -> Path:
    """The key file of ``store`` whose public key has id ``key_id``."""
    chosen = store.key_path or (Path(os.environ[KEY_ENV]) if os.environ.get(KEY_ENV) else None)
    if chosen is not None:
        return chosen
    database = getattr(store, "path", None)
    if isinstance(database, Path):
        # Not "hq.key": that is what a TLS key beside it is often called.
        return database.with_name(f"{database.stem}-signing.key")
    return state_dir() / f"hq-{key_id}.key"


def _public(tx: Tx) -> str | None:
    row = tx.one("SELECT value FROM hq_meta WHERE key = 'public_key'")
    return None if row is None else str(row[0])


def load_key(store: HQStore) -> Ed25519PrivateKey:
    """HQ's key from its file, checked against the public key the database names."""
    with store.read() as tx:
        public = _public(tx)
    if public is None:
        raise SyncError("hq_not_initialised", "HQ has no key yet: run `tillpoints hq init`")
    return _read(key_path(store, device_id_for(load_public_key(public))), public)


def _read(path: Path, public: str | None) -> Ed25519PrivateKey:
    try:
        if readable_by_others(path):
            raise SyncError(
                "hq_key_insecure", f"{path} is readable by other users: chmod 600 {path}"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SyncError(
            "hq_key_missing",
            f"HQ's signing key is not at {path}: give --key FILE or ${KEY_ENV}",
        ) from None
    except (OSError, ValueError, TypeError) as error:
        raise SyncError("hq_key_unreadable", f"{path}: not a readable key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SyncError("hq_key_unreadable", f"{path} does not hold an Ed25519 key")
    if public is not None and public_key_text(key.public_key()) != public:
        raise SyncError("hq_key_mismatch", f"{path} holds another HQ's key than this database's")
    return key


def create_key(store: HQStore) -> Ed25519PrivateKey:
    """``hq init``: this HQ's key. A database that names its key keeps it; else an
    existing file at the key's path is adopted, or a new key is written there 0600."""
    with store.read() as tx:
        public = _public(tx)
    if public is not None:
        return load_key(store)
    key = Ed25519PrivateKey.generate()
    path = key_path(store, device_id_for(key.public_key()))
    if path.exists():
        key = _read(path, None)
    else:
        _write(path, key)
    with store.write() as tx:
        tx.run(
            "INSERT INTO hq_meta (key, value) VALUES ('public_key', ?) ON CONFLICT DO NOTHING",
            (public_key_text(key.public_key()),),
        )
    return load_key(store)


def _write(path: Path, key: Ed25519PrivateKey) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret(path, private_key_pem(key))
    except OSError as error:
        raise SyncError("hq_key_unwritable", f"cannot write HQ's key {path}: {error}") from None


def move_key_out(store: HQStore) -> None:
    """The chain's QR secret is derived from the key (``sync.hq.devices.chain_qr``)
    unless an operator gave one to ``hq init --qr-secret-file`` (a chain whose members'
    phones already make codes under an older secret): it is kept beside the key file,
    ``hq-signing.key`` -> ``hq-signing.qr-secret``, 0600 too (``qr_secret_path``).

    Migration ``006_key_file``: the key an earlier version kept in ``hq_meta`` goes
        to its file (0600) and is deleted from the table, in one transaction; a file that
        already holds another key stops it, with nothing changed."""
    with store.write() as tx:
        if store.dialect == "postgresql":
            tx.run(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        if tx.one("SELECT 1 FROM hq_migrations WHERE name = ?", (MIGRATION,)):
            return
        row = tx.one("SELECT value FROM hq_meta WHERE key = 'signing_key'")
        if row is not None:
            key = serialization.load_pem_private_key(str(row[0]).encode("ascii"), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SyncError("hq_key_unreadable", "hq_meta holds a key that is not Ed25519")
            public = public_key_text(key.public_key())
            path = key_path(store, device_id_for(key.public_key()))
            if path.exists():
                _read(path, public)
            else:
                _write(path, key)
            if store.dialect == "sqlite":
                # Overwrite the deleted row's bytes rather than leave them in a free page.
                tx.run("PRAGMA secure_delete = ON")
            tx.run("DELETE FROM hq_meta WHERE key = 'signing_key'")
            tx.run(
                "INSERT INTO hq_meta (key, value) VALUES ('public_key', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (public,),
            )
        tx.run(
            "INSERT INTO hq_migrations (name, at) VALUES (?, CURRENT_TIMESTAMP) "
            "ON CONFLICT DO NOTHING",
            (MIGRATION,),
        )
    if row is not None:
        _scrub(store)


def _scrub(store: HQStore) -> None:
    """Best effort after the move: no old copy of ``hq_meta``'s pages left behind (the
    SQLite WAL, PostgreSQL's dead row versions)."""
    database = getattr(store, "path", None)
    if isinstance(database, Path):
        with contextlib.closing(sqlite3.connect(database)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    import psycopg

    with contextlib.suppress(psycopg.Error), psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("VACUUM FULL hq_meta")


# What an operator may give as the chain's QR secret: what agent.toml's qr_secret
# accepted (at least 16 characters), at most what a till's secrets file takes.
QR_SECRET_BYTES = (16, 64)


def qr_secret_path(store: HQStore, key: Ed25519PrivateKey) -> Path:
    return key_path(store, device_id_for(key.public_key())).with_suffix(".qr-secret")


def _qr_bytes(text: bytes, where: str) -> bytes:
    secret = text.rstrip(b"\r\n")
    low, high = QR_SECRET_BYTES
    if not low <= len(secret) <= high:
        raise SyncError(
            "invalid_qr_secret",
            f"{where}: the QR secret is not {low} to {high} bytes",
            exit_status=2,
        )
    return secret


def read_qr_secret(store: HQStore, key: Ed25519PrivateKey) -> bytes | None:
    """The QR secret an operator gave ``hq init``, or None: HQ derives it."""
    path = qr_secret_path(store, key)
    try:
        if readable_by_others(path):
            raise SyncError(
                "hq_key_insecure", f"{path} is readable by other users: chmod 600 {path}"
            )
        return _qr_bytes(path.read_bytes(), str(path))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SyncError("hq_key_unreadable", f"{path}: cannot be read: {error}") from None


def keep_qr_secret(store: HQStore, key: Ed25519PrivateKey, source: Path) -> Path:
    """``hq init --qr-secret-file``: the chain's existing QR secret (the text that was
    agent.toml's ``qr_secret``), copied 0600 beside HQ's key; tills get it when they
    register. A different one already kept is not replaced."""
    try:
        secret = _qr_bytes(source.read_bytes(), str(source))
    except OSError as error:
        raise SyncError(
            "invalid_qr_secret", f"{source}: cannot be read: {error}", exit_status=2
        ) from None
    path = qr_secret_path(store, key)
    kept = read_qr_secret(store, key)
    if kept is not None:
        if kept != secret:
            raise SyncError(
                "qr_secret_exists",
                f"{path} already holds another QR secret: tills registered since use it",
                exit_status=3,
            )
        return path
    try:
        write_secret(path, secret)
    except OSError as error:
        raise SyncError("hq_key_unwritable", f"cannot write {path}: {error}") from None
    return path
