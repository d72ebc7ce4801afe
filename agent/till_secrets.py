"""The till's secrets file: ``STATE/secrets.json``, 0600, owned by the agent's user.

It holds the phone pepper(s) (``agent.fields.PhonePepper``) and, once the till
registered, the chain's QR secret (``drivers.codes``: whoever holds it can mint a
valid dynamic member code for any card), never ``agent.toml``, which the POS group
reads. A till that never registered has no QR secret: dynamic codes are off.
``init`` writes a random pepper of the till's own (nothing shared or default: a
till that never registers has keys no other till can make). ``register`` replaces
it with the chain's pepper and cost from HQ's signed registration answer; if
members were already enrolled under the till's own pepper, that one is kept after
it, so the till still finds them by phone (their keys are never comparable with
other stores': HQ's duplicate enrolment alert does not see them).

The file is read again whenever it changes on disk, so an agent that is running
while ``register`` runs uses the chain's pepper and QR secret from then on. A secrets file that
other users can read is refused, like ssh refuses such a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from pathlib import Path
from typing import Any

from agent.errors import LedgerError
from agent.fields import MAX_PHONE_COST, MIN_PHONE_COST, PHONE_COST, PhonePepper
from agent.keys import readable_by_others, replace_secret, write_secret

SECRETS_FILE = "secrets.json"


def _document(peppers: list[tuple[PhonePepper, str]], qr: bytes | None = None) -> bytes:
    phone = [
        {"pepper": base64.b64encode(p.pepper).decode("ascii"), "cost": p.cost, "from": source}
        for p, source in peppers
    ]
    document: dict[str, Any] = {"version": 1, "phone": phone}
    if qr is not None:
        document["qr"] = base64.b64encode(qr).decode("ascii")
    return json.dumps(document, indent=1).encode("utf-8") + b"\n"


def create(state_dir: Path, cost: int = PHONE_COST) -> None:
    """A new till's secrets: a random phone pepper of its own (``init``)."""
    write_secret(
        state_dir / SECRETS_FILE, _document([(PhonePepper(secrets.token_bytes(32), cost), "till")])
    )


def parse_phone(value: Any, where: str) -> PhonePepper:
    """A pepper as ``{"pepper": BASE64, "cost": N}``, from the file or from HQ."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: not an object")
    cost = value.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise ValueError(f"{where}: cost is not a whole number")
    if not MIN_PHONE_COST <= cost <= MAX_PHONE_COST:
        raise ValueError(f"{where}: cost {cost} is outside {MIN_PHONE_COST}..{MAX_PHONE_COST}")
    try:
        pepper = base64.b64decode(str(value.get("pepper")), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: pepper is not base64") from None
    if not 16 <= len(pepper) <= 64:
        raise ValueError(f"{where}: pepper is not 16 to 64 bytes")
    return PhonePepper(pepper, cost)


def parse_qr(value: Any, where: str) -> bytes:
    """The chain's QR secret as base64, from the file or from HQ: 16 to 64 bytes."""
    try:
        secret = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: not base64") from None
    if not 16 <= len(secret) <= 64:
        raise ValueError(f"{where}: not 16 to 64 bytes")
    return secret


class TillSecrets:
    """The secrets file of one state directory, re-read when it changes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SECRETS_FILE
        self._seen: tuple[int, int, int] | None = None
        self._phone: tuple[PhonePepper, ...] = ()
        self._qr: bytes | None = None

    def qr(self) -> bytes | None:
        """The chain's QR secret; None before the till registered (dynamic codes off)."""
        self.phone()
        return self._qr

    def phone(self) -> tuple[PhonePepper, ...]:
        """The current pepper first, then any earlier one still needed for lookups."""
        try:
            info = os.stat(self.path)
            seen = (info.st_ino, info.st_mtime_ns, info.st_size)
            if seen != self._seen:
                (self._phone, self._qr), self._seen = self._load(), seen
        except FileNotFoundError:
            # A state directory made before this file existed: a pepper of its own now.
            try:
                create(self.path.parent)
            except FileExistsError:
                pass
            except OSError as error:
                raise self._broken(error) from None
            return self.phone()
        except OSError as error:
            raise self._broken(error) from None
        return self._phone

    def _load(self) -> tuple[tuple[PhonePepper, ...], bytes | None]:
        if readable_by_others(self.path):
            raise LedgerError(
                "insecure_secrets",
                f"{self.path} is readable by other users: chmod 600 {self.path}",
            )
        try:
            document = json.loads(self.path.read_text("utf-8"))
            peppers = document["phone"]
            parsed = tuple(parse_phone(item, f"phone[{n}]") for n, item in enumerate(peppers))
            qr = None if document.get("qr") is None else parse_qr(document["qr"], "qr")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise self._broken(error) from None
        if not parsed:
            raise self._broken(ValueError("no phone pepper"))
        return parsed, qr

    def _broken(self, error: Exception) -> LedgerError:
        return LedgerError("broken_state", f"{self.path}: cannot be used: {error}")


def adopt_chain(
    state_dir: Path, chain: PhonePepper | None, keep_own: bool, qr: bytes | None = None
) -> None:
    """``register``: the chain's pepper becomes current; the till's own is kept
    after it only when members were enrolled under it (``keep_own``). The chain's
    QR secret (``qr``) replaces any earlier one. ``None``: that part is left as is."""
    secrets_now = TillSecrets(state_dir)
    current = secrets_now.phone()
    if chain is None:
        peppers = [(pepper, "till") for pepper in current]
    else:
        peppers = [(chain, "hq")]
        if keep_own:
            peppers += [(pepper, "till") for pepper in current if pepper != chain]
    replace_secret(state_dir / SECRETS_FILE, _document(peppers, qr or secrets_now.qr()))
