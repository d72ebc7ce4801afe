"""Who may read the reports pages: HQ operator tokens, login links, sessions.

Three kinds of credential live in ``hq_operator_tokens``, each stored only as its
SHA-256 (a leaked table hands out nothing usable):

- ``operator``: a bearer token printed once by ``hq operator-token`` (``tpo_`` +
  256 random bits), valid ``--ttl-days``; sent as ``Authorization: Bearer``.
- ``login``: a one-time link ``/v1/reports/login?once=...`` for a browser, valid
  60 seconds and redeemed at most once (the redeeming ``UPDATE`` is conditional
  on ``used_at IS NULL``, so two workers cannot both redeem it).
- ``session``: what a browser holds after logging in (an HttpOnly, SameSite=Strict
  cookie), valid 12 hours and never longer than the operator token it came from.

Logins and sessions name their operator token as ``parent``: revoking a name
(``hq operator-token --revoke NAME``) ends its tokens, links and sessions at once.

An operator token carries a role (issue 16): ``viewer`` reads, ``marketer`` also
adds campaigns, ``admin`` may do everything (``ALLOWED``); a session has its
token's role. A token from before roles has none and counts as a ``viewer``.
A session's forms carry a CSRF token derived from the session's own secret
(``csrf_token``), which a page from another site cannot know.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sync.errors import invalid, refused, unverified
from sync.hq.db import HQStore, Tx
from sync.protocol import utc_text

TOKEN_PREFIX = "tpo_"  # noqa: S105 -- a recognisable prefix, not a secret
LOGIN_TTL = dt.timedelta(seconds=60)
SESSION_TTL = dt.timedelta(hours=12)
MAX_TTL_DAYS = 366
_MAX_SECRET = 200  # longer than any secret made here: refused unhashed
ROLES = ("viewer", "marketer", "admin")
DEFAULT_ROLE = "viewer"  # what a token without --role may do: read, as before roles
# Who may do what in the console (sync.hq.console): action -> roles.
ALLOWED: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "sign_out": frozenset(ROLES),
    "add_campaign": frozenset({"marketer", "admin"}),
    "block_card": frozenset({"admin"}),
    "acknowledge_alert": frozenset({"admin"}),
    "unfreeze_device": frozenset({"admin"}),
}


@dataclass(frozen=True)
class Operator:
    """Who is asking. ``expires_at``: when the credential shown ends (a link's
    minute, a session's hours); ``token_expires_at``: when the operator token it
    stands for ends, the only bound a new session takes from it."""

    name: str
    expires_at: dt.datetime
    token_expires_at: dt.datetime
    role: str = DEFAULT_ROLE


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _insert(
    tx: Tx,
    secret: str,
    name: str,
    kind: str,
    parent: str | None,
    now: dt.datetime,
    until: dt.datetime,
    role: str | None = None,
) -> None:
    tx.run(
        "INSERT INTO hq_operator_tokens (token_hash, name, kind, parent, created_at, "
        "expires_at, role) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_digest(secret), name, kind, parent, utc_text(now), utc_text(until), role),
    )


def _forget_stale(tx: Tx, now: dt.datetime) -> None:
    """Expired links and sessions are of no use to anyone: drop them."""
    tx.run(
        "DELETE FROM hq_operator_tokens WHERE kind IN ('login', 'session') AND expires_at < ?",
        (utc_text(now - dt.timedelta(days=1)),),
    )


def issue(
    store: HQStore,
    name: str,
    now: dt.datetime,
    ttl: dt.timedelta,
    *,
    login_link: bool = False,
    role: str = DEFAULT_ROLE,
) -> dict[str, Any]:
    """A new operator token (printed once) with its role, optionally with a
    one-time login link."""
    if not name or len(name) > 64 or not name.isprintable():
        raise invalid("invalid_name", "name: 1 to 64 printable characters")
    if role not in ROLES:
        raise invalid("invalid_role", f"role: one of {', '.join(ROLES)}")
    token, expires = _new_secret(), now + ttl
    result: dict[str, Any] = {
        "name": name,
        "role": role,
        "token": token,
        "expires_at": utc_text(expires),
    }
    with store.write() as tx:
        _forget_stale(tx, now)
        _insert(tx, token, name, "operator", None, now, expires, role)
        if login_link:
            once = _new_secret()
            _insert(tx, once, name, "login", _digest(token), now, min(now + LOGIN_TTL, expires))
            result["login_path"] = f"/v1/reports/login?once={once}"
            result["console_login_path"] = f"/v1/reports/login?once={once}&next=/console"
            result["login_expires_at"] = utc_text(min(now + LOGIN_TTL, expires))
    return result


def revoke(store: HQStore, name: str, now: dt.datetime) -> dict[str, Any]:
    """End every token, link and session of ``name``."""
    with store.write() as tx:
        count = tx.run(
            "UPDATE hq_operator_tokens SET revoked_at = ? "
            "WHERE name = ? AND kind = 'operator' AND revoked_at IS NULL",
            (utc_text(now), name),
        )
        tx.run(
            "UPDATE hq_operator_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (utc_text(now), name),
        )
    return {"name": name, "revoked": count}


_LOOKUP = (
    "SELECT t.kind, t.name, t.expires_at, t.revoked_at, t.used_at, p.token_hash, p.expires_at, "
    "p.revoked_at, COALESCE(p.role, t.role) FROM hq_operator_tokens t "
    "LEFT JOIN hq_operator_tokens p ON p.token_hash = t.parent WHERE t.token_hash = ?"
)


def _check(row: Any, kind: str, now: dt.datetime) -> Operator:
    """The operator a row (and its parent) stands for, if both are still good."""
    if row is None or row[0] != kind or row[3] is not None:
        raise _bad()
    expires = token_expires = dt.datetime.fromisoformat(str(row[2]))
    if kind != "operator":
        if row[5] is None or row[7] is not None:
            raise _bad()
        token_expires = dt.datetime.fromisoformat(str(row[6]))
        expires = min(expires, token_expires)
    if expires <= now:
        raise unverified(
            "operator_token_expired",
            "the operator credential has expired: ask for a new `hq operator-token`",
            http_status=401,
        )
    role = str(row[8]) if row[8] in ROLES else DEFAULT_ROLE
    return Operator(str(row[1]), expires, token_expires, role)


def _bad() -> Exception:
    return unverified(
        "bad_operator_token",
        "HQ does not know this operator credential (wrong, revoked or used)",
        http_status=401,
    )


def _valid_text(secret: str | None) -> str:
    if not secret:
        raise unverified(
            "operator_token_required",
            "give Authorization: Bearer <operator token>, or sign in at /v1/reports/login",
            http_status=401,
        )
    if len(secret) > _MAX_SECRET or not secret.isascii():
        raise _bad()
    return secret


def authenticate(
    store: HQStore, bearer: str | None, session: str | None, now: dt.datetime
) -> Operator:
    """A bearer operator token, else a browser session cookie."""
    kind, secret = ("operator", bearer) if bearer else ("session", session)
    secret = _valid_text(secret)
    with store.read() as tx:
        row = tx.one(_LOOKUP, (_digest(secret),))
    return _check(row, kind, now)


def _session(tx: Tx, operator: Operator, parent: str, now: dt.datetime) -> tuple[str, int]:
    """A new browser session under ``parent``: (cookie value, max-age seconds).
    Its life is the session policy's (``SESSION_TTL``), bounded by the operator
    token's; never the minute of the link that opened it."""
    _forget_stale(tx, now)
    until = min(now + SESSION_TTL, operator.token_expires_at)
    secret = _new_secret()
    _insert(tx, secret, operator.name, "session", parent, now, until)
    return secret, max(1, int((until - now).total_seconds()))


def login_with_token(store: HQStore, token: str | None, now: dt.datetime) -> tuple[str, int]:
    """Trade an operator token (typed into the login form) for a session."""
    digest = _digest(_valid_text(token))
    with store.write() as tx:
        operator = _check(tx.one(_LOOKUP, (digest,)), "operator", now)
        return _session(tx, operator, digest, now)


def login_with_link(store: HQStore, once: str | None, now: dt.datetime) -> tuple[str, int]:
    """Redeem a one-time login link (once, within its minute) for a session."""
    digest = _digest(_valid_text(once))
    with store.write() as tx:
        # No lock needed: the conditional UPDATE below is what makes it once
        # (a second worker's UPDATE waits for the first, then matches no row).
        row = tx.one(_LOOKUP, (digest,))
        if row is not None and row[4] is not None:
            raise _bad()
        operator = _check(row, "login", now)
        assert row is not None  # _check refused a missing row
        taken = tx.run(
            "UPDATE hq_operator_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
            (utc_text(now), digest),
        )
        if taken != 1:
            raise _bad()
        return _session(tx, operator, str(row[5]), now)


def sign_out(store: HQStore, session: str | None, now: dt.datetime) -> None:
    """End one browser session (its cookie then opens nothing)."""
    if not session or len(session) > _MAX_SECRET or not session.isascii():
        return
    with store.write() as tx:
        tx.run(
            "UPDATE hq_operator_tokens SET revoked_at = ? "
            "WHERE token_hash = ? AND kind = 'session' AND revoked_at IS NULL",
            (utc_text(now), _digest(session)),
        )


def csrf_token(session: str) -> str:
    """The token a session's forms carry: a keyed hash of the session's secret, so
    only a page HQ served into that session knows it (the cookie is HttpOnly)."""
    return hmac.new(session.encode("ascii"), b"tillpoints csrf v1", "sha256").hexdigest()


def check_csrf(session: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(csrf_token(session), given):
        raise refused(
            "csrf_token_invalid",
            "this form has no valid CSRF token: reload the page and try again",
            http_status=403,
        )


def require(operator: Operator, action: str) -> None:
    """Refuse an action the operator's role does not allow (403)."""
    if operator.role not in ALLOWED.get(action, frozenset()):
        raise refused(
            "role_forbidden",
            f"{action.replace('_', ' ')}: not allowed for the {operator.role} role",
            http_status=403,
        )
