"""Device registration as a state table (docs/style.md, "State machines as tables").

A registration starts as a one-time token HQ issued for one (store, till). The
till redeems it once, which binds its keys to that store and till; a fork found
on upload freezes the device until an operator unfreezes it::

    issued --redeem--> used --bind--> bound --freeze--> frozen --unfreeze--> bound
    issued --expire--> expired

Any other (state, event) pair is refused with the code in ``REFUSALS``: a used or
expired token is never redeemed again, a frozen device never uploads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from enum import StrEnum

from sync.errors import refused

TOKEN_TTL = dt.timedelta(hours=24)


class State(StrEnum):
    ISSUED = "issued"
    USED = "used"
    EXPIRED = "expired"
    BOUND = "bound"
    FROZEN = "frozen"


class Event(StrEnum):
    REDEEM = "redeem"
    EXPIRE = "expire"
    BIND = "bind"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    UPLOAD = "upload"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.ISSUED, Event.REDEEM): State.USED,
    (State.ISSUED, Event.EXPIRE): State.EXPIRED,
    (State.USED, Event.BIND): State.BOUND,
    (State.BOUND, Event.UPLOAD): State.BOUND,
    (State.BOUND, Event.FREEZE): State.FROZEN,
    (State.FROZEN, Event.FREEZE): State.FROZEN,
    (State.FROZEN, Event.UNFREEZE): State.BOUND,
}

# (code, HTTP status) for the pairs a client can provoke.
REFUSALS: dict[tuple[State, Event], tuple[str, int]] = {
    (State.USED, Event.REDEEM): ("token_used", 410),
    (State.BOUND, Event.REDEEM): ("token_used", 410),
    (State.FROZEN, Event.REDEEM): ("token_used", 410),
    (State.EXPIRED, Event.REDEEM): ("token_expired", 410),
    (State.FROZEN, Event.UPLOAD): ("device_frozen", 403),
    (State.BOUND, Event.UNFREEZE): ("not_frozen", 409),
}


def transition(state: State, event: Event) -> State:
    """The next state, or a ``SyncError`` naming why the event is refused here."""
    following = TRANSITIONS.get((state, event))
    if following is not None:
        return following
    code, status = REFUSALS.get((state, event), ("invalid_transition", 409))
    raise refused(code, f"{event.value}: not allowed while {state.value}", http_status=status)


def token_state(stored: str, expires_at: dt.datetime, now: dt.datetime) -> State:
    """A stored ``issued`` token past its expiry is ``expired`` (derived, not stored)."""
    state = State(stored)
    if state is State.ISSUED and now >= expires_at:
        return transition(state, Event.EXPIRE)
    return state


def new_token() -> str:
    """256 random bits (``secrets``), URL-safe: typed or pasted once by store IT.

    The ``tp_`` prefix makes a token recognisable (and secret scanners can match
    it), and means it never starts with ``-``, which a command line would take
    for an option."""
    return "tp_" + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
