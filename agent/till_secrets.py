"""The till's secrets file: ``STATE/secrets.json``, 0600, owned by the agent's user.

It holds the phone pepper(s) (``agent.fields.PhonePepper``), never
``agent.toml``, which the POS group reads. ``init`` writes a random pepper of the
till's own (nothing shared or default: a till that never registers has keys no
other till can make). ``register`` replaces it with the chain's pepper and cost
from HQ's signed registration answer; if members were already enrolled under the
till's own pepper, that one is kept after it, so the till still finds them by
phone (their keys are never comparable with other stores': HQ's duplicate
enrolment alert does not see them).

The file is read again whenever it changes on disk, so an agent that is running
while ``register`` runs uses the chain's pepper from then on. A secrets file that
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
from sync.keys import readable_by_others, replace_secret, write_secret

SECRETS_FILE = "secrets.json"


def _document(peppers: list[tuple[PhonePepper, str]]) -> bytes:
    phone = [
        {"pepper": base64.b64encode(p.pepper).decode("ascii"), "cost": p.cost, "from": source}
        for p, source in peppers
    ]
    return json.dumps({"version": 1, "phone": phone}, indent=1).encode("utf-8") + b"\n"


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


class TillSecrets:
    """The secrets file of one state directory, re-read when it changes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / SECRETS_FILE
        self._seen: tuple[int, int, int] | None = None
        self._phone: tuple[PhonePepper, ...] = ()

    def phone(self) -> tuple[PhonePepper, ...]:
        """The current pepper first, then any earlier one still needed for lookups."""
        try:
            info = os.stat(self.path)
            seen = (info.st_ino, info.st_mtime_ns, info.st_size)
            if seen != self._seen:
                self._phone, self._seen = self._load(), seen
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

    def _load(self) -> tuple[PhonePepper, ...]:
        if readable_by_others(self.path):
            raise LedgerError(
                "insecure_secrets",
                f"{self.path} is readable by other users: chmod 600 {self.path}",
            )
        try:
            document = json.loads(self.path.read_text("utf-8"))
            peppers = document["phone"]
            parsed = tuple(parse_phone(item, f"phone[{n}]") for n, item in enumerate(peppers))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise self._broken(error) from None
        if not parsed:
            raise self._broken(ValueError("no phone pepper"))
        return parsed

    def _broken(self, error: Exception) -> LedgerError:
        return LedgerError("broken_state", f"{self.path}: cannot be used: {error}")


def adopt_chain(state_dir: Path, chain: PhonePepper, keep_own: bool) -> None:
    """``register``: the chain's pepper becomes current; the till's own is kept
    after it only when members were enrolled under it (``keep_own``)."""
    current = TillSecrets(state_dir).phone()
    peppers = [(chain, "hq")]
    if keep_own:
        peppers += [(pepper, "till") for pepper in current if pepper != chain]
    replace_secret(state_dir / SECRETS_FILE, _document(peppers))
