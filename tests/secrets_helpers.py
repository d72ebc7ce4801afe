"""Give a till the chain's QR secret as `register` does: in its 0600 secrets file
(agent.till_secrets), for tests that need dynamic codes without an HQ."""

from __future__ import annotations

from pathlib import Path

from agent.till_secrets import adopt_chain


def give_qr_secret(state: Path, secret: bytes) -> None:
    adopt_chain(state, None, keep_own=True, qr=secret)
