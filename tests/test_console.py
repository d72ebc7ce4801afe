"""HQ's console (issue 16): sessions, roles, the fleet, members, alerts and actions.

Over real HTTP on loopback against ``hq serve`` and in-process on both backends.
"""

from __future__ import annotations

import datetime as dt

from sync.hq.db import HQStore
from sync.hq.insight import operators


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_session_opened_by_a_link_lasts_the_session_policy(hq_store: HQStore) -> None:
    """The link lives a minute; the session it opens lives 12 hours (docs/insight.md),
    not the link's remaining seconds (the cookie once came back with Max-Age=59)."""
    now = utc_now()
    issued = operators.issue(hq_store, "ops", now, dt.timedelta(days=2), login_link=True)
    once = issued["login_path"].split("once=", 1)[1]
    session, max_age = operators.login_with_link(hq_store, once, now + dt.timedelta(seconds=1))
    assert max_age == 12 * 3600
    later = now + dt.timedelta(hours=11)
    assert operators.authenticate(hq_store, None, session, later).name == "ops"
    # Still never longer than the operator token it came from.
    short = operators.issue(hq_store, "short", now, dt.timedelta(hours=2), login_link=True)
    once = short["login_path"].split("once=", 1)[1]
    _, max_age = operators.login_with_link(hq_store, once, now)
    assert 7199 <= max_age <= 7200
