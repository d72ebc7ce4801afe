"""The agent's local API: routes from HTTP requests to ledger operations.

JSON bodies in the shapes and with the error codes of the command line
(docs/contract.md); invalid input is 400, a refusal by a rule 409, too many wrong PINs
429; every error body is ``{"error": CODE, "message": TEXT}``. The routes run the
ledger through the daemon's single bridge thread (``Services.call``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from agent import fields
from agent.errors import InvalidInput
from agent.events import EventHub
from agent.http import Request, Response, error
from agent.ledger import Ledger
from agent.money import parse_amount
from agent.openapi import OPENAPI
from agent.results import Answer
from drivers.cards import redact_payment_cards, shown
from drivers.errors import TillpointsError

logger = logging.getLogger("tillpoints.api")


class Services(Protocol):
    """What the routes need from the daemon."""

    ledger: Ledger
    hub: EventHub

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    async def status(self) -> dict[str, Any]: ...

    async def authorise(self, body: dict[str, Any], role: str) -> str: ...


Route = Callable[[Services, Request, dict[str, str]], Awaitable[Response]]


# What each field of a request body may be (docs/local-api.md). "text": a JSON
# string; "money": a decimal string ("12.30"), never a JSON number, whose float
# would not be exact; "points": a whole number as a JSON integer or a string (500
# or "500"); "whole": the same, for counts; "flag": true or false; "lines": a list
# of receipt lines.
Kind = Literal["text", "money", "points", "whole", "flag", "lines"]
MAX_DEPTH = 8
MAX_NUMBER_DIGITS = 40
_FIELD_NAME = re.compile(r"[a-z_]{1,40}", re.ASCII)


@dataclass(frozen=True)
class Schema:
    """The fields of one route's body: their kinds, and which must be there."""

    fields: dict[str, Kind]
    required: frozenset[str]

    @classmethod
    def of(cls, required: str, optional: str = "", **kinds: Kind) -> Schema:
        names = required.split() + optional.split()
        return cls({name: kinds.get(name, "text") for name in names}, frozenset(required.split()))


_KIND_TEXT: dict[Kind, str] = {
    "text": "must be a string",
    "money": 'must be a decimal string like "12.30"',
    "points": "must be a whole number (an integer or a string of digits)",
    "whole": "must be a whole number (an integer or a string of digits)",
    "flag": "must be true or false",
    "lines": "must be a list of receipt lines",
}


def _number(text: str) -> int:
    # json.loads would build any integer; refuse absurd ones before Python's own
    # digit limit turns them into an unexpected ValueError.
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise InvalidInput("invalid_body", f"body: a number longer than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _no_constant(text: str) -> Any:
    raise InvalidInput("invalid_body", f"body: {text} is not a JSON value")


def _parse(raw: bytes) -> Any:
    """The body as JSON, or ``InvalidInput``: never another exception."""
    try:
        value = json.loads(raw or b"{}", parse_int=_number, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInput("invalid_body", f"body: nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise InvalidInput("invalid_body", "body: not UTF-8 text") from None
    except ValueError:  # json.JSONDecodeError is one
        raise InvalidInput("invalid_body", "body: not JSON") from None
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    """Walk the parsed body once, without recursion: refuse deep nesting and strings
    that are not Unicode text (a lone surrogate such as "\\ud800" cannot be stored,
    logged or sent back), naming where they are."""
    stack: list[tuple[Any, str, int]] = [(value, "body", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise InvalidInput("invalid_body", f"body: nested deeper than {MAX_DEPTH} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, inner in pairs:
                if isinstance(key, str):
                    _unicode(key, f"{where}: a field name")
                    place = _field(key) if where == "body" else f"{where}.{_field(key)}"
                else:
                    place = f"{where}[{key}]"
                stack.append((inner, place, depth + 1))
        elif isinstance(item, str):
            _unicode(item, where)


def _field(name: str) -> str:
    """A field name as a message may show it: quoted and cut short unless plain."""
    return name if _FIELD_NAME.fullmatch(name) else shown(name, 40)


def _unicode(text: str, where: str) -> None:
    if any("\ud800" <= char <= "\udfff" for char in text):
        raise InvalidInput("invalid_text", f"{where}: not valid Unicode text (a lone surrogate)")


def _body(request: Request, schema: Schema) -> dict[str, Any]:
    """The request's JSON object checked against ``schema``: unknown fields, missing
    required ones and wrong JSON types (null included: an optional field is left
    out, not sent as null) are refused naming the field."""
    body = _parse(request.body)
    if not isinstance(body, dict):
        raise InvalidInput("invalid_body", "body: must be a JSON object")
    unknown = sorted(set(body) - set(schema.fields))
    if unknown:
        raise InvalidInput("invalid_body", f"{_field(unknown[0])}: unknown field")
    missing = sorted(schema.required - set(body))
    if missing:
        raise InvalidInput("invalid_body", f"{missing[0]}: required")
    for key, item in body.items():
        kind = schema.fields[key]
        if not _is_kind(item, kind):
            code = "invalid_amount" if kind == "money" else "invalid_body"
            given = "null (leave the field out instead)" if item is None else _json_type(item)
            raise InvalidInput(code, f"{key}: {_KIND_TEXT[kind]}, not {given}")
    return body


def _json_type(item: Any) -> str:
    if isinstance(item, bool):
        return "true or false"
    if isinstance(item, (int, float)):
        return "a number"
    if isinstance(item, str):
        return "a string"
    return "a list" if isinstance(item, list) else "an object"


def _is_kind(item: Any, kind: Kind) -> bool:
    if kind in ("text", "money"):
        return isinstance(item, str)
    if kind in ("points", "whole"):
        return isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool))
    if kind == "flag":
        return isinstance(item, bool)
    return isinstance(item, list)


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


ENROLL = Schema.of(
    "name phone",
    "birthday gender district household card consent_marketing staff",
    household="whole",
    consent_marketing="flag",
)
EARN = Schema.of("member receipt", "amount lines staff", amount="money", lines="lines")
REDEEM = Schema.of("member receipt points", "amount staff", points="points", amount="money")
REFUND = Schema.of("receipt", "lines staff supervisor pin", lines="lines")
CARD_REPLACE = Schema.of("member card", "staff pin")
ADJUST = Schema.of("member points reason", "staff pin", points="points")
TAKE_OFFER = Schema.of("member offer receipt", "staff")
CONSENT = Schema.of("member marketing", "staff", marketing="flag")
SUGGESTION = Schema.of("member suggestion outcome", "staff")


async def _answered(
    services: Services, operation: Callable[..., Answer], *args: Any, **kwargs: Any
) -> Response:
    """Run a ledger operation on the bridge; its typed answer (``agent.results``)
    becomes JSON here, at the edge."""
    answer: Answer = await services.call(operation, *args, **kwargs)
    return Response(200, answer.as_json())


async def _status(services: Services, request: Request, match: dict[str, str]) -> Response:
    return Response(200, await services.status())


async def _member(services: Services, request: Request, match: dict[str, str]) -> Response:
    return await _answered(services, services.ledger.member, match["ref"])


async def _lookup(services: Services, request: Request, match: dict[str, str]) -> Response:
    phone = request.query.get("phone")
    if phone is None:
        raise InvalidInput("invalid_phone", "phone: give ?phone=")
    return await _answered(services, services.ledger.lookup, phone)


async def _enroll(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, ENROLL)
    return await _answered(services, services.ledger.enrol, **body)


def _earn_sale(body: dict[str, Any]) -> dict[str, Any]:
    if ("amount" in body) == ("lines" in body):
        raise InvalidInput("invalid_body", "amount: give either amount or lines")
    return (
        {"lines": _lines(body["lines"])}
        if "lines" in body
        else {"amount": parse_amount(body["amount"])}
    )


async def _earn(services: Services, request: Request, match: dict[str, str]) -> Response:
    # One earn route: the fixed route's (``earn_on_bridge``), on the bridge.
    answer: Response = await services.call(earn_on_bridge, services.ledger, request)
    return answer


def earn_on_bridge(ledger: Ledger, request: Request) -> Response:
    """``POST /v1/earn`` as ``router`` answers it, all of it on the bridge thread
    (``agent.http.fixed_request``'s route): the body checked, the earn recorded and
    its answer built where the ledger runs, so the request crosses threads once."""
    try:
        body = _body(request, EARN)
        sale = _earn_sale(body)
        earned = ledger.earn(body["member"], body["receipt"], **sale, staff=body.get("staff"))
        return Response(200, earned.as_json())
    except TillpointsError as failure:
        return _answer(failure.http_status, failure.as_json())
    except Exception as failure:  # noqa: BLE001 - the connection is answered, always
        return _failed("POST", "/v1/earn", failure)


async def _redeem(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, REDEEM)
    amount = parse_amount(body["amount"]) if "amount" in body else None
    return await _answered(
        services,
        services.ledger.redeem,
        body["member"],
        body["receipt"],
        body["points"],
        amount=amount,
        staff=body.get("staff"),
    )


async def _refund(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, REFUND)
    supervised = False
    if "supervisor" in body:
        fields.staff(body["supervisor"], "supervisor")
        await services.authorise(
            {"staff": body["supervisor"], "pin": body.get("pin")}, "supervisor"
        )
        supervised = True
    lines = _lines(body["lines"]) if "lines" in body else None
    return await _answered(
        services,
        services.ledger.refund,
        body["receipt"],
        lines,
        body.get("staff"),
        supervised=supervised,
    )


async def _card_replace(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, CARD_REPLACE)
    fields.staff(body.get("staff"))
    staff = await services.authorise(body, "supervisor")
    return await _answered(
        services, services.ledger.card_replace, body["member"], body["card"], staff
    )


async def _consent(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, CONSENT)
    staff = fields.staff(body.get("staff"))
    return await _answered(
        services, services.ledger.consent, body["member"], bool(body["marketing"]), staff
    )


async def _adjust(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, ADJUST)
    fields.staff(body.get("staff"))
    staff = await services.authorise(body, "supervisor")
    return await _answered(
        services, services.ledger.adjust, body["member"], body["points"], body["reason"], staff
    )


async def _take_offer(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, TAKE_OFFER)
    return await _answered(
        services,
        services.ledger.take_offer,
        body["member"],
        body["offer"],
        body["receipt"],
        body.get("staff"),
    )


async def _suggestion(services: Services, request: Request, match: dict[str, str]) -> Response:
    body = _body(request, SUGGESTION)
    return await _answered(
        services,
        services.ledger.record_suggestion,
        body["member"],
        body["suggestion"],
        body["outcome"],
        body.get("staff"),
    )


async def _store_suggestions(
    services: Services, request: Request, match: dict[str, str]
) -> Response:
    return await _answered(services, services.ledger.store_suggestions, request.query.get("store"))


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
    ("POST", re.compile(r"/v1/consent"), _consent),
    ("POST", re.compile(r"/v1/suggestions"), _suggestion),
    ("GET", re.compile(r"/v1/suggestions"), _store_suggestions),
    ("GET", re.compile(r"/v1/events"), _events),
    ("GET", re.compile(r"/v1/openapi\.json"), _openapi),
]

# The body of every POST route, by path: what the tests sweep and the OpenAPI
# document is checked against.
BODIES: dict[str, Schema] = {
    "/v1/enroll": ENROLL,
    "/v1/earn": EARN,
    "/v1/redeem": REDEEM,
    "/v1/refund": REFUND,
    "/v1/card-replace": CARD_REPLACE,
    "/v1/adjust": ADJUST,
    "/v1/offers/take": TAKE_OFFER,
    "/v1/consent": CONSENT,
    "/v1/suggestions": SUGGESTION,
}


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
            except TillpointsError as failure:
                return _answer(failure.http_status, failure.as_json())
            except Exception as failure:  # noqa: BLE001 - the connection is answered, always
                return _failed(method, pattern.pattern, failure)
        if allowed:
            return _answer(
                405,
                {
                    "error": "method_not_allowed",
                    "message": f"{request.path}: use {', '.join(allowed)}",
                },
            )
        return _answer(
            404,
            {
                "error": "not_found",
                "message": f"{request.path}: no such path (see /v1/openapi.json)",
            },
        )

    return handle


def _failed(method: str, route: str, failure: Exception) -> Response:
    """A bug, not bad input: say so to the client and in the log, but never echo what
    was sent (it may hold personal data or a card number)."""
    logger.error("%s %s failed: %s", method, route, type(failure).__name__)
    return error(500, "internal_error", "the agent failed to handle this request")


def _answer(status: int, payload: dict[str, Any]) -> Response:
    """An error answer whose message never repeats a payment card number that was
    typed into the request."""
    return Response(status, {**payload, "message": redact_payment_cards(str(payload["message"]))})
