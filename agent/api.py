"""The agent's local API: routes from HTTP requests to ledger operations.

JSON bodies in the shapes and with the error codes of the command line
(CONTRACT.md); invalid input is 400, a refusal by a rule 409, too many wrong PINs
429; every error body is ``{"error": CODE, "message": TEXT}``. The routes run the
ledger through the daemon's single bridge thread (``Services.call``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote

from agent import fields
from agent.errors import InvalidInput, LedgerError
from agent.events import EventHub
from agent.http import Request, Response, error
from agent.ledger import Ledger
from agent.money import parse_amount
from agent.openapi import OPENAPI
from drivers.errors import DriverError


class Services(Protocol):
    """What the routes need from the daemon."""

    ledger: Ledger
    hub: EventHub

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    async def status(self) -> dict[str, Any]: ...

    async def authorise(self, body: dict[str, Any], role: str) -> str: ...


Route = Callable[[Services, Request, dict[str, str]], Awaitable[Response]]


def _body(request: Request, allowed: set[str], required: set[str]) -> dict[str, Any]:
    try:
        value = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("invalid_body", "body: not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("invalid_body", "body: must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidInput("invalid_body", f"{unknown[0]}: unknown field")
    missing = sorted(required - set(value))
    if missing:
        raise InvalidInput("invalid_body", f"{missing[0]}: required")
    for key, item in value.items():
        if key not in ("lines", "consent_marketing", "household") and not (
            item is None or isinstance(item, str)
        ):
            raise InvalidInput("invalid_body", f"{key}: must be a string")
    return value


def _lines(value: Any) -> tuple[fields.Line, ...]:
    if not isinstance(value, list) or not value or len(value) > fields.MAX_LINES:
        raise InvalidInput("invalid_line", "lines: a list of 1 to 200 receipt lines")
    parsed = []
    for index, line in enumerate(value):
        if not isinstance(line, dict) or set(line) != {"category", "qty", "amount"}:
            raise InvalidInput(
                "invalid_line", f"lines[{index}]: needs exactly category, qty and amount"
            )
        parsed.append(
            fields.line_parts(line["category"], line["qty"], line["amount"], f"lines[{index}]")
        )
    return tuple(parsed)


async def _status(services: Services, request: Request, match: dict[str, str]) -> Response:
    return Response(200, await services.status())


async def _member(services: Services, request: Request, match: dict[str, str]) -> Response:
    return Response(200, await services.call(services.ledger.member, match["ref"]))


async def _lookup(services: Services, request: Request, match: dict[str, str]) -> Response:
    phone = request.query.get("phone")
    if phone is None:
        raise InvalidInput("invalid_phone", "phone: give ?phone=")
    return Response(200, await services.call(services.ledger.lookup, phone))


async def _enroll(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(
        request,
        {
            "name",
            "phone",
            "birthday",
            "gender",
            "district",
            "household",
            "card",
            "consent_marketing",
            "staff",
        },
        {"name", "phone"},
    )
    consent = body.pop("consent_marketing", False)
    if not isinstance(consent, bool):
        raise InvalidInput("invalid_body", "consent_marketing: must be true or false")
    household = body.pop("household", None)
    if household is not None and (
        isinstance(household, bool) or not isinstance(household, (int, str))
    ):
        raise InvalidInput("invalid_household", "household: must be a whole number")
    result = await services.call(
        services.ledger.enrol, **body, household=household, consent_marketing=consent
    )
    return Response(200, result)


async def _earn(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, {"member", "receipt", "amount", "lines", "staff"}, {"member", "receipt"})
    if ("amount" in body) == ("lines" in body):
        raise InvalidInput("invalid_body", "amount: give either amount or lines")
    sale: dict[str, Any] = (
        {"lines": _lines(body["lines"])}
        if "lines" in body
        else {"amount": parse_amount(body["amount"])}
    )
    result = await services.call(
        services.ledger.earn, body["member"], body["receipt"], **sale, staff=body.get("staff")
    )
    return Response(200, result)


async def _redeem(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(
        request,
        {"member", "receipt", "points", "amount", "staff"},
        {"member", "receipt", "points"},
    )
    amount = parse_amount(body["amount"]) if body.get("amount") is not None else None
    result = await services.call(
        services.ledger.redeem,
        body["member"],
        body["receipt"],
        body["points"],
        amount=amount,
        staff=body.get("staff"),
    )
    return Response(200, result)


async def _refund(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, {"receipt", "lines", "staff", "supervisor", "pin"}, {"receipt"})
    supervised = False
    if body.get("supervisor") is not None:
        await services.authorise(
            {"staff": body["supervisor"], "pin": body.get("pin")}, "supervisor"
        )
        supervised = True
    lines = _lines(body["lines"]) if body.get("lines") is not None else None
    result = await services.call(
        services.ledger.refund, body["receipt"], lines, body.get("staff"), supervised=supervised
    )
    return Response(200, result)


async def _card_replace(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, {"member", "card", "staff", "pin"}, {"member", "card"})
    staff = await services.authorise(body, "supervisor")
    result = await services.call(services.ledger.card_replace, body["member"], body["card"], staff)
    return Response(200, result)


async def _adjust(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(
        request, {"member", "points", "reason", "staff", "pin"}, {"member", "points", "reason"}
    )
    staff = await services.authorise(body, "supervisor")
    result = await services.call(
        services.ledger.adjust, body["member"], body["points"], body["reason"], staff
    )
    return Response(200, result)


async def _take_offer(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, {"member", "offer", "receipt", "staff"}, {"member", "offer", "receipt"})
    result = await services.call(
        services.ledger.take_offer,
        body["member"],
        body["offer"],
        body["receipt"],
        body.get("staff"),
    )
    return Response(200, result)


async def _events(services: Services, request: Request, match: dict[str, str]) -> Response:
    return Response(200, stream=services.hub.stream(await services.status()))


async def _openapi(services: Services, request: Request, match: dict[str, str]) -> Response:
    return Response(200, OPENAPI)


ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("GET", re.compile(r"/v1/status"), _status),
    ("GET", re.compile(r"/v1/members/(?P<ref>[^/]+)"), _member),
    ("GET", re.compile(r"/v1/lookup"), _lookup),
    ("POST", re.compile(r"/v1/enroll"), _enroll),
    ("POST", re.compile(r"/v1/earn"), _earn),
    ("POST", re.compile(r"/v1/redeem"), _redeem),
    ("POST", re.compile(r"/v1/refund"), _refund),
    ("POST", re.compile(r"/v1/card-replace"), _card_replace),
    ("POST", re.compile(r"/v1/adjust"), _adjust),
    ("POST", re.compile(r"/v1/offers/take"), _take_offer),
    ("GET", re.compile(r"/v1/events"), _events),
    ("GET", re.compile(r"/v1/openapi\.json"), _openapi),
]


def router(services: Services) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        allowed = []
        for method, pattern, route in ROUTES:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            groups = {key: unquote(value) for key, value in match.groupdict().items()}
            try:
                return await route(services, request, groups)
            except (LedgerError, DriverError) as failure:
                status = getattr(failure, "http_status", 400 if failure.exit_status == 2 else 500)
                return Response(status, failure.as_json())
        if allowed:
            return error(405, "method_not_allowed", f"{request.path}: use {', '.join(allowed)}")
        return error(404, "not_found", f"{request.path}: no such path (see /v1/openapi.json)")

    return handle
