"""The OpenAPI 3.1 description of the agent's local API (``GET /v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from agent.suggestions import OUTCOMES, SUGGESTION_ID

_STRING = {"type": "string"}
# Free text (names, districts, reasons): no control characters or ANSI escapes, no
# lone surrogates, no payment card number (400 invalid_text, payment_card, ...).
_TEXT = {"type": "string", "minLength": 1}
# Points: a whole number, as a JSON integer or a string of digits (500 or "500").
_POINTS = {"type": ["integer", "string"], "pattern": "^[0-9]{1,13}$", "minimum": 1, "example": 500}
_SIGNED_POINTS = {"type": ["integer", "string"], "pattern": "^-?[0-9]{1,13}$", "example": -50}
_MONEY = {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$", "example": "12.30"}
_LINE = {
    "type": "object",
    "required": ["category", "qty", "amount"],
    "additionalProperties": False,
    "properties": {
        "category": {"type": "string", "example": "grocery"},
        "qty": {"type": ["integer", "string"], "minimum": 1, "maximum": 100000},
        "amount": _MONEY,
    },
}
_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": _STRING, "message": _STRING},
}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }


def _answers(required: list[str]) -> dict[str, Any]:
    error = {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
    return {
        "200": {
            "description": "done",
            "content": {"application/json": {"schema": {"type": "object", "required": required}}},
        },
        "400": {**error, "description": "invalid input"},
        "409": {**error, "description": "refused by a rule"},
    }


def _post(summary: str, body: dict[str, Any], required: list[str]) -> dict[str, Any]:
    error = {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
    unverified = (
        "journal_unverified: the journal failed the agent's start-up check; "
        "till_restored_from_backup: `sync` found this till restored from a backup or cloned"
    )
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                **_answers(required),
                "400": {
                    **_answers(required)["400"],
                    "description": "invalid input: a body that is not a JSON object, an "
                    "unknown field, a missing one, a JSON type the field does not take (null "
                    "included: leave an optional field out), nesting deeper than 8 levels "
                    "(invalid_body); text that is not Unicode (invalid_text); a payment card "
                    "number in any field (payment_card); a bad value (invalid_FIELD)",
                },
                "413": {**error, "description": "body over 256 KiB (body_too_large)"},
                "503": {**error, "description": unverified},
            },
        }
    }


_STAFF = {"staff": _STRING}
_PIN = {"staff": _STRING, "pin": {"type": "string", "pattern": "^[0-9]{4,12}$"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "tillpoints agent",
        "version": "1",
        "description": "The till agent's local API on its Unix socket. Money is a decimal "
        "string; points are integers. See docs/local-api.md for worked examples.",
    },
    "paths": {
        "/v1/status": {
            "get": {
                "summary": "the agent, its readers and its journal",
                "responses": _answers(["store", "till", "readers", "journal_head", "unsynced"]),
            }
        },
        "/v1/members/{ref}": {
            "get": {
                "summary": "a member by id, card number or QR payload",
                "parameters": [{"name": "ref", "in": "path", "required": True, "schema": _STRING}],
                "responses": _answers(
                    ["member_id", "name", "tier", "balance", "offers", "suggestions"]
                ),
            }
        },
        "/v1/lookup": {
            "get": {
                "summary": "a member by phone",
                "parameters": [
                    {"name": "phone", "in": "query", "required": True, "schema": _STRING}
                ],
                "responses": _answers(["member_id", "card"]),
            }
        },
        "/v1/enroll": _post(
            "enrol a member",
            _object(
                ["name", "phone"],
                {
                    "name": _TEXT,
                    "phone": _STRING,
                    "birthday": {"type": "string", "format": "date"},
                    "gender": {"type": "string", "enum": ["F", "M", "X"]},
                    "district": _TEXT,
                    "household": {"type": ["integer", "string"]},
                    "card": _STRING,
                    "consent_marketing": {"type": "boolean"},
                    **_STAFF,
                },
            ),
            ["member_id", "card"],
        ),
        "/v1/earn": _post(
            "points for a sale (idempotent by receipt)",
            _object(
                ["member", "receipt"],
                {
                    "member": _STRING,
                    "receipt": _STRING,
                    "amount": _MONEY,
                    "lines": {"type": "array", "items": _LINE, "minItems": 1},
                    **_STAFF,
                },
            ),
            ["member_id", "receipt", "points", "balance", "replayed"],
        ),
        "/v1/redeem": _post(
            "pay with points",
            _object(
                ["member", "receipt", "points"],
                {
                    "member": _STRING,
                    "receipt": _STRING,
                    "points": _POINTS,
                    "amount": _MONEY,
                    **_STAFF,
                },
            ),
            ["member_id", "receipt", "points", "value", "balance"],
        ),
        "/v1/refund": _post(
            "refund a receipt or some lines (a supervisor above the rules' limit)",
            _object(
                ["receipt"],
                {
                    "receipt": _STRING,
                    "lines": {"type": "array", "items": _LINE},
                    **_STAFF,
                    "supervisor": _STRING,
                    "pin": _PIN["pin"],
                },
            ),
            ["member_id", "receipt", "points", "balance"],
        ),
        "/v1/card-replace": _post(
            "replace a lost card (supervisor)",
            _object(
                ["member", "card", "staff", "pin"], {"member": _STRING, "card": _STRING, **_PIN}
            ),
            ["member_id", "card"],
        ),
        "/v1/adjust": _post(
            "manual points correction (supervisor)",
            _object(
                ["member", "points", "reason", "staff", "pin"],
                {
                    "member": _STRING,
                    "points": _SIGNED_POINTS,
                    "reason": _TEXT,
                    **_PIN,
                },
            ),
            ["member_id", "points", "balance"],
        ),
        "/v1/consent": _post(
            "record a member's marketing consent (true) or its withdrawal (false)",
            _object(
                ["member", "marketing"],
                {"member": _STRING, "marketing": {"type": "boolean"}, **_STAFF},
            ),
            ["member_id", "marketing"],
        ),
        "/v1/offers/take": _post(
            "take an HQ offer shown with the member (once per till; a points multiplier "
            "applies to the receipt's earn)",
            _object(
                ["member", "offer", "receipt"],
                {"member": _STRING, "offer": _STRING, "receipt": _STRING, **_STAFF},
            ),
            ["member_id", "offer_id", "receipt", "kind", "points", "value", "balance"],
        ),
        "/v1/suggestions": {
            **_post(
                "record what a member answered to one of HQ's suggestions (once per "
                "suggestion on this till: the same answer again is a replay, another one "
                "409 already_recorded; 409 unknown_suggestion, member_erased)",
                _object(
                    ["member", "suggestion", "outcome"],
                    {
                        "member": _STRING,
                        "suggestion": {"type": "string", "pattern": f"^{SUGGESTION_ID.pattern}$"},
                        "outcome": {"type": "string", "enum": list(OUTCOMES)},
                        **_STAFF,
                    },
                ),
                ["member_id", "suggestion", "outcome"],
            ),
            "get": {
                "summary": "today's suggestions for a store's members (default: this till's "
                "store), for in-store advisors; no phone numbers",
                "parameters": [
                    {"name": "store", "in": "query", "required": False, "schema": _STRING}
                ],
                "responses": _answers(["store", "day", "suggestions"]),
            },
        },
        "/v1/events": {
            "get": {
                "summary": "Server-Sent Events: hello, scan, reader, sync",
                "responses": {
                    "200": {"description": "an event stream", "content": {"text/event-stream": {}}}
                },
            }
        },
        "/v1/openapi.json": {
            "get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}
        },
    },
}
