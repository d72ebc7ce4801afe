"""Ed25519 keys and other secrets on disk: created 0600 (never readable by another
user, not even briefly), never logged; SQLite files likewise."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64 (what `init` prints and `--public-key` takes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse a base64 raw public key; raises ValueError when it is not one."""
    raw = base64.b64decode(text.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def device_id_for(key: Ed25519PublicKey) -> str:
    """A device id derived from its key: 12 hex digits (48 bits) of SHA-256."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:12]


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the key so that no other user can ever read it, not even briefly."""
    write_secret(path, private_key_pem(key))


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) 0600 whatever the umask, and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_secret(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, 0600: a crash leaves the old file
    or the new one, never half of either."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    write_secret(temporary, data)
    replace_durably(temporary, path)


def replace_durably(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` and fsync the folder, so the rename itself
    survives a power cut (rename(2) is atomic, but durable only once the directory is)."""
    os.replace(source, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def private_sqlite(path: Path) -> None:
    """Make a SQLite database private before SQLite opens it: an absent file is
    created empty (a valid empty database) 0600; an existing one and its ``-wal``
    and ``-shm`` lose every group and other permission bit. SQLite gives the
    ``-wal`` and ``-shm`` files it creates the database file's mode, so none of the
    three is ever readable by another user."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for side in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(side.stat().st_mode)
            if mode & 0o077:
                os.chmod(side, mode & 0o700)


def readable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o077)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 key")
    return key
