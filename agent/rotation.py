"""Key rotation: a ``key_rotate`` entry, signed by the old key, names the new one.

The chain stays one chain (same device id, same sequence); only the key that
signs the entries *after* the rotation changes. Verification therefore walks the
chain and switches keys at each valid ``key_rotate`` entry. A rotation entry
signed by anything but the key in force is just a bad signature.

Till side, ``rotate_device_key`` appends the entry and swaps the key file so that
a crash at any point leaves a state the next call can finish: the new key is
written to ``device.key.next`` first (fsynced), the entry is committed, and only
then is the file renamed over ``device.key``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.chain import GENESIS_PREV, ChainReport, Entry, walk_chain
from agent.chain import rotated_key as rotated_key
from agent.entries import KeyRotate, Kind, readable
from agent.errors import Refused
from agent.journal import Journal
from agent.keys import public_key_text, read_private_key, replace_durably, write_private_key

NEXT_KEY_FILE = "device.key.next"


def verify_rotating(
    entries: Iterable[Entry],
    public_key: Ed25519PublicKey,
    *,
    device: str | None = None,
    start_seq: int = 1,
    start_prev: str = GENESIS_PREV,
) -> tuple[ChainReport, Ed25519PublicKey]:
    """``verify_chain`` that follows key rotations; also returns the key in force."""
    walk = walk_chain(
        entries,
        public_key,
        signatures="every",
        rotations=True,
        device=device,
        start_seq=start_seq,
        start_prev=start_prev,
    )
    return walk.report, walk.key


def rotate_device_key(
    state_dir: Path, now: dt.datetime | None = None, staff: str | None = None
) -> dict[str, object]:
    """Replace the till's journal key by a new one, announced in the chain.

    Returns ``{"seq", "public_key"}``. The ledger's projection must treat
    ``key_rotate`` as an entry without effects (``agent.projection``)."""
    db_path, key_path = state_dir / "ledger.db", state_dir / "device.key"
    next_path = state_dir / NEXT_KEY_FILE
    old_key = read_private_key(key_path)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    try:
        pending = _pending_rotation(conn, next_path)
        if pending is not None:
            replace_durably(next_path, key_path)
            return pending
        if next_path.exists():
            next_path.unlink()  # left by a crash before the entry was committed
        new_key = Ed25519PrivateKey.generate()
        write_private_key(next_path, new_key)
        new_text = public_key_text(new_key.public_key())
        moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = _append_rotation(conn, old_key, new_text, moment, staff)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        replace_durably(next_path, key_path)
        return {"seq": seq, "public_key": new_text}
    finally:
        conn.close()


def _append_rotation(
    conn: sqlite3.Connection,
    old_key: Ed25519PrivateKey,
    new_text: str,
    moment: dt.datetime,
    staff: str | None,
) -> int:
    device = _meta(conn, "device_id")
    journal = Journal(conn, device or "")
    head = journal.head(conn)
    if head[0] == 0 or device is None:
        raise Refused("not_initialised", "rotate: the till has no journal yet")
    body = KeyRotate(public_key=new_text, effects={"delta": 0, "expired": 0}).to_body()
    entry = journal.append(conn, old_key, head, Kind.KEY_ROTATE, staff, body, moment)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('public_key', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (new_text,),
    )
    return entry.seq


def _pending_rotation(conn: sqlite3.Connection, next_path: Path) -> dict[str, object] | None:
    """A rotation committed before a crash, whose key file was not yet renamed."""
    if not next_path.exists():
        return None
    try:
        new_text = public_key_text(read_private_key(next_path).public_key())
    except (OSError, ValueError):
        return None
    last = Journal(conn).last(conn)
    if last is None:
        return None
    rotation = readable(last.kind, last.body)
    if not isinstance(rotation, KeyRotate) or rotation.public_key != new_text:
        return None
    return {"seq": last.seq, "public_key": new_text}


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
