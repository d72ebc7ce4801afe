"""The OpenAPI 3.1 description of HQ's sync API, served at ``/v1/openapi.json``.

It is what schemathesis fuzzes (``tests/test_hq_fuzz.py``), so every status the
service answers is listed, and every error has the same ``Error`` shape.
"""

from __future__ import annotations

from typing import Any

from sync.protocol import REGISTER_FIELDS
from sync.wire import MAX_BODY_BYTES

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
_SIGNED = {
    "type": "object",
    "required": ["document", "sig"],
    "properties": {
        "document": {"type": "object"},
        "sig": {"type": "string", "description": "Ed25519 (RFC 8032) by HQ's key, hex"},
    },
}
_ENTRY = {
    "type": "object",
    "required": ["v", "device", "seq", "ts", "kind", "staff", "body", "prev", "hash", "sig"],
    "properties": {
        "v": {"type": "integer", "const": 1},
        "device": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1},
        "ts": {"type": "string"},
        "kind": {"type": "string"},
        "staff": {"type": ["string", "null"]},
        "body": {"type": "object"},
        "prev": {"type": "string"},
        "hash": {"type": "string"},
        "sig": {"type": "string"},
    },
}
_FORK_REPORT = {
    "type": "object",
    "required": ["device", "seq", "hash", "head_seq"],
    "properties": {
        "device": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1, "description": "an entry of the till's"},
        "hash": {"type": "string", "description": "the till's hash of entry seq"},
        "head_seq": {"type": "integer", "minimum": 1, "description": "the till's last entry"},
    },
}
_REGISTER = {
    "type": "object",
    "required": list(REGISTER_FIELDS),
    "properties": {name: {"type": "string"} for name in REGISTER_FIELDS},
}
_AUTH_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
    for name in ("Tillpoints-Device", "Tillpoints-Date", "Tillpoints-Signature")
]
_DEVICE = {"name": "device", "in": "path", "required": True, "schema": {"type": "string"}}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(status): {"description": "error", **ref} for status in statuses}


def _ok(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"200": {"description": text, "content": {"application/json": {"schema": schema}}}}


_OPERATOR: list[dict[str, list[str]]] = [{"operatorBearer": []}, {"operatorSession": []}]
_HTML = {"text/html": {"schema": {"type": "string"}}}
_SIGNED_IN = {
    "303": {
        "description": "signed in: an HttpOnly, SameSite=Strict session cookie "
        "(`tp_reports`, path /v1/reports) and a redirect to /v1/reports",
        "headers": {"Set-Cookie": {"schema": {"type": "string"}}},
    }
}
_FILTERS = [
    {"name": name, "in": "query", "required": False, "schema": schema}
    for name, schema in (
        ("from", {"type": "string", "format": "date"}),
        ("to", {"type": "string", "format": "date"}),
        ("store", {"type": "string", "maxLength": 64}),
    )
]


def _reports_paths() -> dict[str, Any]:
    """The reports pages (issue 8), behind an operator token or session."""
    return {
        "/v1/reports": {
            "get": {
                "operationId": "reportsIndex",
                "security": _OPERATOR,
                "parameters": _FILTERS,
                "responses": {
                    "200": {"description": "the headline charts, links", "content": _HTML},
                    **_errors(400, 401, 503),
                },
            }
        },
        "/v1/reports/{name}": {
            "get": {
                "operationId": "report",
                "security": _OPERATOR,
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    *_FILTERS,
                    {
                        "name": "campaign",
                        "in": "query",
                        "required": False,
                        "description": "campaign_response, campaign_model: one campaign",
                        "schema": {"type": "string", "maxLength": 64},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["html", "json", "csv"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "one report, as `hq report` prints it",
                        "content": {
                            **_HTML,
                            "application/json": {"schema": {"type": "object"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404, 409, 503),
                },
            }
        },
        "/v1/reports/login": {
            "get": {
                "operationId": "reportsLoginLink",
                "parameters": [
                    {
                        "name": "once",
                        "in": "query",
                        "required": False,
                        "description": "a one-time login link's nonce (`hq operator-token "
                        "--login-link`, 60 s); without it, the sign-in form",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "the sign-in form", "content": _HTML},
                    **_SIGNED_IN,
                    **_errors(401, 503),
                },
            },
            "post": {
                "operationId": "reportsLogin",
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {
                            "schema": {
                                "type": "object",
                                "required": ["token"],
                                "properties": {"token": {"type": "string"}},
                            }
                        }
                        for media in ("application/x-www-form-urlencoded", "application/json")
                    },
                },
                "responses": {**_SIGNED_IN, **_errors(400, 401, 413, 415, 503)},
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    signed = {"$ref": "#/components/schemas/Signed"}
    authed = (400, 401, 403, 404, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tillpoints HQ sync API",
            "version": "1",
            "description": "Signed till journals up, signed directory deltas down. "
            f"Bodies are JSON, optionally gzip; at most {MAX_BODY_BYTES} bytes (413). "
            "Answers over 8 kB are gzipped for a client that sends Accept-Encoding: gzip.",
        },
        "paths": {
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "responses": _ok({"type": "object"}, "HQ is up; its public key"),
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": _ok({"type": "object"}, "this document"),
                }
            },
            "/v1/register": {
                "post": {
                    "operationId": "register",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _REGISTER}},
                    },
                    "responses": {
                        **_ok(signed, "a signed registration receipt"),
                        **_errors(400, 401, 403, 409, 410, 413, 415, 503),
                    },
                }
            },
            "/v1/devices/{device}/head": {
                "get": {
                    "operationId": "head",
                    "parameters": [_DEVICE, *_AUTH_HEADERS],
                    "responses": {**_ok(signed, "HQ's signed head"), **_errors(*authed)},
                }
            },
            "/v1/devices/{device}/batches": {
                "post": {
                    "operationId": "upload",
                    "parameters": [_DEVICE, *_AUTH_HEADERS],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["device", "entries"],
                                    "properties": {
                                        "device": {"type": "string"},
                                        "entries": {"type": "array", "items": _ENTRY},
                                        "member_keys": {
                                            "type": "object",
                                            "description": "member id -> base64 AES-256 key "
                                            "of each sealed enrolment in the batch (issue 17)",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **_ok(signed, "a signed acknowledgement (the new head)"),
                        **_errors(*authed, 409, 413, 415, 422),
                    },
                }
            },
            "/v1/devices/{device}/delta": {
                "get": {
                    "operationId": "delta",
                    "parameters": [
                        _DEVICE,
                        *_AUTH_HEADERS,
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {**_ok(signed, "a signed directory delta"), **_errors(*authed)},
                }
            },
            "/v1/devices/{device}/fork": {
                "post": {
                    "operationId": "reportFork",
                    "description": "the till reports that its journal is behind or differs "
                    "from HQ's signed head (restored or cloned): HQ checks it against what "
                    "it holds, raises a fork alert and freezes the device",
                    "parameters": [_DEVICE, *_AUTH_HEADERS],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _FORK_REPORT}},
                    },
                    "responses": {
                        **_ok({"type": "object"}, "the device is frozen"),
                        **_errors(*authed, 413, 415, 422),
                    },
                }
            },
            "/v1/devices/{device}/phone-lookup": {
                "post": {
                    "operationId": "phoneLookup",
                    "description": "A member of any store by phone key (the till's scrypt of "
                    "the number under the chain's pepper); at most 30 an hour per till (429).",
                    "parameters": [_DEVICE, *_AUTH_HEADERS],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["phone_key"],
                                    "properties": {
                                        "phone_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **_ok(signed, "signed member_id, name and card"),
                        **_errors(*authed, 413, 415, 429),
                    },
                }
            },
            **_reports_paths(),
        },
        "components": {
            "schemas": {"Error": _ERROR, "Signed": _SIGNED},
            "securitySchemes": {
                "operatorBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `tillpoints hq operator-token`",
                },
                "operatorSession": {"type": "apiKey", "in": "cookie", "name": "tp_reports"},
            },
        },
    }
