"""The HQ sync API (``/v1/...``) as a Falcon WSGI application: a thin shell.

Each resource authenticates the till (``sync.hq.devices.authenticate``), bounds
and decodes the body (``sync.wire``), and calls one HQ operation; errors become
``{"error": CODE, "message": TEXT}`` with the status the error carries. The one
``except Exception`` is the request guard at the bottom: an unexpected failure is
logged with its traceback and answered 500 ``internal_error``, never a stack
trace on the wire. Described by the OpenAPI document at ``/v1/openapi.json``.

The reports pages (``/v1/reports...``, issue 8) are for people, not tills: they
take an operator token (``Authorization: Bearer``) or the session cookie a
sign-in sets (``sync.hq.insight.operators``), and answer HTML, JSON or CSV. The
console (``/console/...``, issue 16) takes the same sign-in (``sync.hq.console.web``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon

from agent.keys import public_key_text
from drivers.errors import TillpointsError
from sync.errors import SyncError, invalid, refused
from sync.hq import devices as hq_devices
from sync.hq import directory as hq_directory
from sync.hq import forks as hq_forks
from sync.hq import ingest as hq_ingest
from sync.hq.console import web as console
from sync.hq.console.pages import CONSOLE
from sync.hq.console.web import CONSOLE_COOKIE, REPORTS_COOKIE
from sync.hq.db import HQStore
from sync.hq.devices import Caller
from sync.hq.insight import operators
from sync.hq.openapi import openapi_document
from sync.hq.stores import open_store
from sync.protocol import DATE_HEADER, DEVICE_HEADER, SIGNATURE_HEADER, Batch
from sync.wire import MAX_BODY_BYTES, decode_json, encode_reply, too_large

log = logging.getLogger("tillpoints.hq")
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Api:
    """What every resource shares: the store, HQ's key (configuration, loaded once
    per process, never request state) and the clock."""

    def __init__(self, store: HQStore, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self.key = hq_devices.hq_key(store)

    def body(self, req: falcon.Request) -> bytes:
        if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
            raise too_large(MAX_BODY_BYTES)
        data: bytes = req.bounded_stream.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise too_large(MAX_BODY_BYTES)
        return data

    def caller(self, req: falcon.Request, device: str, body: bytes) -> Caller:
        headers = {
            "device": req.get_header(DEVICE_HEADER),
            "date": req.get_header(DATE_HEADER),
            "signature": req.get_header(SIGNATURE_HEADER),
        }
        caller = hq_devices.authenticate(
            self.store, headers, req.method, req.relative_uri, body, self.clock()
        )
        req.context.device = caller.device
        if caller.device != device:
            raise refused("device_mismatch", "the path names another device", http_status=403)
        return caller


class Health:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True, "hq_public_key": public_key_text(self.api.key.public_key())}


class OpenApi:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = openapi_document()


class Register:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = decode_json(self.api.body(req), req.get_header("Content-Encoding"))
        resp.media = hq_devices.register(self.api.store, self.api.key, request, self.api.clock())


class Head:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, device: str) -> None:
        caller = self.api.caller(req, device, b"")
        resp.media = hq_directory.head(
            self.api.store, self.api.key, caller.device, self.api.clock()
        )


class Batches:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_post(self, req: falcon.Request, resp: falcon.Response, device: str) -> None:
        body = self.api.body(req)
        caller = self.api.caller(req, device, body)
        try:
            document = decode_json(body, req.get_header("Content-Encoding"))
        except SyncError as error:
            if error.code == "integer_out_of_range":  # refused, and worth a look
                hq_ingest.refused_alert(self.api.store, caller.device, error, self.api.clock())
            raise
        batch = Batch.from_json(document)
        req.context.entries = len(batch.entries)
        resp.media = hq_ingest.ingest(
            self.api.store, self.api.key, caller.device, batch, self.api.clock(), caller.till_clock
        )


class Fork:
    """A till's report that it is a second history of its device (``sync.hq.forks``)."""

    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_post(self, req: falcon.Request, resp: falcon.Response, device: str) -> None:
        body = self.api.body(req)
        caller = self.api.caller(req, device, body)
        report = decode_json(body, req.get_header("Content-Encoding"))
        resp.media = hq_forks.report_fork(self.api.store, caller.device, report, self.api.clock())


class Delta:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, device: str) -> None:
        caller = self.api.caller(req, device, b"")
        text = req.get_param("cursor") or "0"
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise invalid("invalid_cursor", "cursor: a whole number >= 0")
        document = hq_directory.delta(
            self.api.store, self.api.key, caller.device, int(text), self.api.clock()
        )
        # The last page carries the chain's suggestions and offers (a few MB at a
        # large chain, every night, every till): gzip when the till takes it.
        resp.data, encoding = encode_reply(document, req.get_header("Accept-Encoding"))
        resp.content_type = falcon.MEDIA_JSON
        resp.vary = ("Accept-Encoding",)
        if encoding is not None:
            resp.set_header("Content-Encoding", encoding)
        hq_devices.seen(self.api.store, caller.device, self.api.clock(), req.user_agent)


class PhoneLookup:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def on_post(self, req: falcon.Request, resp: falcon.Response, device: str) -> None:
        body = self.api.body(req)
        caller = self.api.caller(req, device, body)
        request = decode_json(body, req.get_header("Content-Encoding"))
        resp.media = hq_directory.phone_lookup(
            self.api.store, self.api.key, caller.device, request, self.api.clock()
        )


# -- the reports pages (issue 8): behind an operator credential -----------------------

REPORTS_PATH = "/v1/reports"
_NEXT = re.compile(r"/console(/[a-z]{1,20})?", re.ASCII)
# The pages carry no script and load nothing: inline CSS and SVG only.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _page(resp: falcon.Response, content_type: str, text: str) -> None:
    resp.content_type = content_type
    resp.text = text
    for name, value in _PAGE_HEADERS.items():
        resp.set_header(name, value)


def _filters(req: falcon.Request, *extra: str) -> dict[str, str | None]:
    """``from``, ``to`` (checked as dates by the catalog), ``store``, and ``extra``
    (``campaign``: one report's own filter, kept out of the index's links)."""
    found: dict[str, str | None] = {}
    for name in ("from", "to", "store", *extra):
        value = req.get_param(name) or None
        if value is not None and (len(value) > 64 or not value.isprintable()):
            raise invalid(f"invalid_{name}", f"{name}: at most 64 printable characters")
        found[name] = value
    return found


class _Reports:
    def __init__(self, api: _Api) -> None:
        self.api = api

    def operator(self, req: falcon.Request) -> str:
        """The operator behind a bearer token, else behind the session cookie."""
        scheme, _, value = (req.get_header("Authorization") or "").partition(" ")
        bearer = value.strip() if scheme.lower() == "bearer" else None
        cookies = req.get_cookie_values(REPORTS_COOKIE) or []
        who = operators.authenticate(
            self.api.store, bearer, cookies[0] if cookies else None, self.api.clock()
        )
        req.context.operator = who.name
        return who.name


class ReportsIndex(_Reports):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.insight.page import index_page

        who = self.operator(req)
        _page(resp, "text/html; charset=utf-8", index_page(self.api.store, _filters(req), who))


class ReportByName(_Reports):
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        from sync.hq.insight.catalog import REPORTS, render, run_report
        from sync.hq.insight.page import clock_of, report_page

        who = self.operator(req)
        if name not in REPORTS:
            raise SyncError(
                "unknown_report", f"report: one of {', '.join(REPORTS)}", http_status=404
            )
        fmt = req.get_param("format") or "html"
        if fmt not in ("html", "json", "csv"):
            raise invalid("invalid_format", "format: one of html, json, csv")
        filters = _filters(req, "campaign")
        try:
            report = run_report(
                self.api.store,
                name,
                filters["from"],
                filters["to"],
                filters["store"],
                filters["campaign"],
            )
        except SyncError as error:
            if error.code != "insight_extra_missing":
                raise
            raise SyncError(
                "report_unavailable",
                f"{name}: needs the optional extra, pip install 'tillpoints[insight]'",
                http_status=503,
            ) from None
        if fmt == "html":
            text = report_page(report, filters, who, clock_of(self.api.store))
            _page(resp, "text/html; charset=utf-8", text)
        elif fmt == "csv":
            _page(resp, "text/csv; charset=utf-8", render(report, "csv"))
            resp.set_header("Content-Disposition", f'attachment; filename="{name}.csv"')
        else:
            _page(resp, "application/json", render(report, "json"))


class ReportsLogin(_Reports):
    """``GET``: the sign-in form, or a one-time link (``?once=``) redeemed;
    ``POST`` (form or JSON ``token``): an operator token traded for a session.
    Both set an HttpOnly, SameSite=Strict cookie and redirect to the index."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from sync.hq.insight.page import login_page

        once = req.get_param("once")
        if once is None:
            _page(
                resp, "text/html; charset=utf-8", login_page(next_page=_next(req.get_param("next")))
            )
            return
        self._signed_in(
            req, resp, operators.login_with_link(self.api.store, once, self.api.clock())
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self.api.body(req)
        token: Any = None
        if (req.content_type or "").startswith("application/json"):
            request = decode_json(body, req.get_header("Content-Encoding"))
            token = request.get("token") if isinstance(request, dict) else None
        else:
            try:
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
            except ValueError:
                raise invalid("malformed_login", "a form with one field, token") from None
            token = form["token"][0] if form.get("token") else None
            req.context.next_page = form["next"][0] if form.get("next") else None
        if token is not None and not isinstance(token, str):
            raise invalid("malformed_login", "token: a string")
        self._signed_in(
            req, resp, operators.login_with_token(self.api.store, token, self.api.clock())
        )

    def _signed_in(
        self, req: falcon.Request, resp: falcon.Response, session: tuple[str, int]
    ) -> None:
        secret, max_age = session
        secure = console.secure_cookie(req)
        # One session, one cookie per area it opens (the reports, the console).
        for name, path in ((REPORTS_COOKIE, REPORTS_PATH), (CONSOLE_COOKIE, CONSOLE)):
            resp.set_cookie(
                name,
                secret,
                max_age=max_age,
                path=path,
                secure=secure,
                http_only=True,
                same_site="Strict",
            )
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.status = falcon.HTTP_303
        wanted = req.get_param("next") or getattr(req.context, "next_page", None)
        resp.location = _next(wanted) or REPORTS_PATH


def _next(wanted: str | None) -> str | None:
    """Where a sign-in may lead: the console's pages only, never another site."""
    return wanted if wanted is not None and _NEXT.fullmatch(wanted) else None


class _RequestLog:
    """One JSON log line per request: method, path, status, time, device, code."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", time.perf_counter())
        media = resp.media if isinstance(resp.media, dict) else {}
        log.info(
            "request",
            extra={
                "method": req.method,
                "path": req.path,
                "status": int(str(resp.status).split()[0]),
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "device": getattr(req.context, "device", None),
                "entries": getattr(req.context, "entries", None),
                "code": media.get("error"),
                **({"operator": req.context.operator} if "operator" in req.context else {}),
            },
        )


def _answer(resp: falcon.Response, status: int, body: dict[str, Any]) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = body


def _ledger_error(
    req: falcon.Request, resp: falcon.Response, error: TillpointsError, params: dict[str, Any]
) -> None:
    _answer(resp, error.http_status, error.as_json())
    if error.http_status == 401 and req.path.startswith((REPORTS_PATH, CONSOLE)):
        resp.set_header("WWW-Authenticate", 'Bearer realm="tillpoints reports"')


def _http_error(
    req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError, params: dict[str, Any]
) -> None:
    words = str(error.title or "http error").lower().split()
    code = "_".join(word for word in words if not word.isdigit()) or "http_error"
    _answer(resp, error.status_code, {"error": code, "message": error.description or code})
    if isinstance(error.headers, dict):
        for name, value in error.headers.items():
            resp.set_header(name, value)


def _unexpected(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: dict[str, Any]
) -> None:
    # The top-level request guard: log everything, tell the client nothing internal.
    log.error("unexpected error", exc_info=error, extra={"path": req.path})
    _answer(resp, 500, {"error": "internal_error", "message": "HQ failed; retry later"})


def create_app(
    db_url: str, clock: Clock = utc_now, key: Path | None = None
) -> falcon.App[Any, Any]:
    api = _Api(open_store(db_url, key), clock)
    app = falcon.App(middleware=[_RequestLog()])
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/v1/health", Health(api))
    app.add_route("/v1/openapi.json", OpenApi())
    app.add_route("/v1/register", Register(api))
    app.add_route("/v1/devices/{device}/head", Head(api))
    app.add_route("/v1/devices/{device}/batches", Batches(api))
    app.add_route("/v1/devices/{device}/delta", Delta(api))
    app.add_route("/v1/devices/{device}/fork", Fork(api))
    app.add_route("/v1/devices/{device}/phone-lookup", PhoneLookup(api))
    app.add_route(REPORTS_PATH, ReportsIndex(api))
    app.add_route(REPORTS_PATH + "/login", ReportsLogin(api))
    app.add_route(REPORTS_PATH + "/{name}", ReportByName(api))
    console.mount(app, api, _PAGE_HEADERS)
    # Most specific last: Falcon tries handlers from the last one added.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(TillpointsError, _ledger_error)
    return app
