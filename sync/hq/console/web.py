"""The console's HTTP resources (mounted by ``sync.hq.http.create_app``).

Every page and action takes the operator sign-in of the reports
(``sync.hq.insight.operators``): a session cookie (``tp_console``, set with the
reports' at sign-in) or a bearer operator token. Actions are POSTs: a session's
must carry its CSRF token (a bearer token is never sent by a browser on its own,
so it needs none); the role must allow the action; then the action runs and is
audited in one transaction (``sync.hq.console.actions``) and the answer is a
redirect to the page that shows the result (post/redirect/get).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

import falcon

from drivers.errors import TillpointsError
from sync.errors import invalid
from sync.hq.console import actions, pages
from sync.hq.db import HQStore
from sync.hq.insight import operators
from sync.hq.insight.operators import Operator

CONSOLE_COOKIE = "tp_console"
REPORTS_COOKIE = "tp_reports"
MAX_FIELD = 2000
MAX_FIELDS = 32


class Api(Protocol):
    store: HQStore
    key: Any

    def clock(self) -> Any: ...

    def body(self, req: falcon.Request) -> bytes: ...


_LONG_AGO = dt.datetime(1970, 1, 2)
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def secure_cookie(req: falcon.Request) -> bool:
    """Secure unless the browser talks plain HTTP to this very machine (tests, an
    on-box proxy): a browser keeps no Secure cookie from http://."""
    return not (req.scheme == "http" and req.host in _LOOPBACK)


def cookie(req: falcon.Request, name: str) -> str | None:
    values = req.get_cookie_values(name) or []
    return values[0] if values else None


def credentials(req: falcon.Request) -> tuple[str | None, str | None]:
    """(bearer token, session cookie) as the request carries them."""
    scheme, _, value = (req.get_header("Authorization") or "").partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" else None
    return bearer, cookie(req, CONSOLE_COOKIE) or cookie(req, REPORTS_COOKIE)


def signed_in(api: Api, req: falcon.Request) -> tuple[Operator, str | None]:
    """The operator, and the session secret when the request rode on a cookie."""
    bearer, session = credentials(req)
    who = operators.authenticate(api.store, bearer, session, api.clock())
    req.context.operator = who.name
    return who, None if bearer else session


def form_fields(body: bytes) -> dict[str, str]:
    """A urlencoded form: each field once, bounded; refused whole otherwise."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise invalid("malformed_form", f"a UTF-8 form of at most {MAX_FIELDS} fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise invalid("malformed_form", f"{name[:40]!r}: given twice")
        if len(value) > MAX_FIELD:
            raise invalid("malformed_form", f"{name[:40]!r}: at most {MAX_FIELD} characters")
        fields[name] = value
    return fields


def query_fields(req: falcon.Request, names: tuple[str, ...]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in names:
        value = req.get_param(name)
        if value is None:
            continue
        if len(value) > MAX_FIELD or not value.isprintable():
            raise invalid(f"invalid_{name}", f"{name}: at most {MAX_FIELD} printable characters")
        fields[name] = value
    return fields


def html(resp: falcon.Response, text: str, headers: dict[str, str]) -> None:
    resp.content_type = "text/html; charset=utf-8"
    resp.text = text
    for name, value in headers.items():
        resp.set_header(name, value)


class _Page:
    def __init__(self, api: Api, headers: dict[str, str]) -> None:
        self.api, self.headers = api, headers

    def reader(self, req: falcon.Request) -> tuple[Operator, str | None]:
        who, session = signed_in(self.api, req)
        operators.require(who, "read")
        return who, operators.csrf_token(session) if session else None


class Home(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.reader(req)
        resp.status = falcon.HTTP_303
        resp.location = pages.CONSOLE + "/members"


class MemberExport(_Page):
    """``/console/members/{member}/export``: the printable subject-access page."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, member: str) -> None:
        from sync.hq.console.privacy_page import export_page
        from sync.hq.scrub import export

        who, csrf = self.reader(req)
        found = export(self.api.store, member, self.api.clock())
        html(resp, export_page(who, csrf, found), self.headers)


class Members(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.console.members import checked_query, find, story

        who, csrf = self.reader(req)
        query = checked_query(req.get_param("q"))
        found, how = None, ""
        if query is not None:
            hit = find(self.api.store, self.api.key, query)
            if hit is not None:
                found, how = story(self.api.store, hit[0], self.api.clock()), hit[1]
        html(resp, pages.members_page(who, csrf, query, found, how), self.headers)


class Devices(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.console.fleet import devices

        who, csrf = self.reader(req)
        fleet = devices(self.api.store, self.api.clock())
        html(resp, pages.devices_page(who, csrf, fleet), self.headers)


class Alerts(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.console.alerts import every_alert

        who, csrf = self.reader(req)
        html(resp, pages.alerts_page(who, csrf, every_alert(self.api.store)), self.headers)


class Audit(_Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.console.audit_log import recent

        who, csrf = self.reader(req)
        html(resp, pages.audit_page(who, csrf, recent(self.api.store)), self.headers)


_CAMPAIGN_FIELDS = ("name", "target", "offer", "title", "from", "to", "holdout", "chain_wide")


class Campaigns(_Page):
    """GET: the form, and with ``preview`` the audience it would reach; POST: add it."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.insight.campaigns import list_campaigns

        who, csrf = self.reader(req)
        form = query_fields(req, _CAMPAIGN_FIELDS)
        preview, problem = None, None
        if req.get_param("preview"):
            try:
                preview = actions.audience(self.api.store, form)
            except TillpointsError as error:  # a form's bad value (sync's or agent's)
                if error.http_status >= 500:
                    raise
                problem = error.message
        listed = list_campaigns(self.api.store)["campaigns"]
        html(resp, pages.campaigns_page(who, csrf, form, preview, problem, listed), self.headers)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        act(self.api, req, resp, "add_campaign", _add_campaign)


def act(
    api: Api,
    req: falcon.Request,
    resp: falcon.Response,
    action: str,
    run: Callable[[Api, Operator, dict[str, str]], str],
) -> None:
    """One console action: signed in, the CSRF token of a session, the role, then
    ``run`` (which audits) and a redirect to where it shows."""
    who, session = signed_in(api, req)
    fields = form_fields(api.body(req))
    if session is not None:
        operators.check_csrf(session, fields.get("csrf"))
    operators.require(who, action)
    resp.status = falcon.HTTP_303
    resp.location = run(api, who, fields)
    resp.set_header("Cache-Control", "no-store")


def _members_of(fields: dict[str, str], fallback: str) -> str:
    back = fields.get("q") or fallback
    return pages.CONSOLE + "/members?" + urllib.parse.urlencode({"q": back})


def _block(api: Api, who: Operator, fields: dict[str, str]) -> str:
    done = actions.block_card(api.store, who, fields.get("card"), fields.get("reason"), api.clock())
    return _members_of(fields, done["card"])


def _acknowledge(api: Api, who: Operator, fields: dict[str, str]) -> str:
    actions.acknowledge(api.store, who, fields.get("alert"), fields.get("note"), api.clock())
    return pages.CONSOLE + "/alerts"


def _unfreeze(api: Api, who: Operator, fields: dict[str, str]) -> str:
    actions.unfreeze_device(api.store, who, fields.get("device"), fields.get("reason"), api.clock())
    return pages.CONSOLE + ("/alerts" if fields.get("back") == "alerts" else "/devices")


def _add_campaign(api: Api, who: Operator, fields: dict[str, str]) -> str:
    actions.add_campaign(api.store, who, fields, api.clock())
    return pages.CONSOLE + "/campaigns"


class Action:
    def __init__(
        self, api: Api, action: str, run: Callable[[Api, Operator, dict[str, str]], str]
    ) -> None:
        self.api, self.action, self.run = api, action, run

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        act(self.api, req, resp, self.action, self.run)


class SignOut:
    """End the session and clear both cookies (the console's and the reports')."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _, session = signed_in(self.api, req)
        fields = form_fields(self.api.body(req))
        if session is not None:
            operators.check_csrf(session, fields.get("csrf"))
            operators.sign_out(self.api.store, session, self.api.clock())
        for name, path in ((CONSOLE_COOKIE, pages.CONSOLE), (REPORTS_COOKIE, "/v1/reports")):
            resp.set_cookie(
                name,
                "",
                expires=_LONG_AGO,  # falcon drops a max_age of 0
                path=path,
                secure=secure_cookie(req),
                http_only=True,
                same_site="Strict",
            )
        resp.status = falcon.HTTP_303
        resp.location = "/v1/reports/login?next=/console"
        resp.set_header("Cache-Control", "no-store")


def mount(app: falcon.App[Any, Any], api: Api, headers: dict[str, str]) -> None:
    base = pages.CONSOLE
    app.add_route(base, Home(api, headers))
    app.add_route(base + "/members", Members(api, headers))
    app.add_route(base + "/members/{member}/export", MemberExport(api, headers))
    app.add_route(base + "/devices", Devices(api, headers))
    app.add_route(base + "/alerts", Alerts(api, headers))
    app.add_route(base + "/audit", Audit(api, headers))
    app.add_route(base + "/campaigns", Campaigns(api, headers))
    app.add_route(base + "/cards/block", Action(api, "block_card", _block))
    app.add_route(base + "/alerts/ack", Action(api, "acknowledge_alert", _acknowledge))
    app.add_route(base + "/devices/unfreeze", Action(api, "unfreeze_device", _unfreeze))
    app.add_route(base + "/logout", SignOut(api))
