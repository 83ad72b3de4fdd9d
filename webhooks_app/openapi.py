"""The OpenAPI 3 document of `/api`, served at `/api/openapi.json`.

Kept true by tests/test_openapi.py, which runs schemathesis against the app:
every documented operation, fed inputs the schema allows (and some it does
not), must answer with a documented status and a body matching its schema.
"""

from __future__ import annotations

import copy
from typing import Any

from . import openapi_processing
from .json_input import MAX_JSON_DEPTH
from .models import EventStatus
from .pagination import COUNT_CAP
from .replays import BULK_RETRY_MAX

STATUS_LIST_PATTERN = "^({0})(,({0}))*$".format("|".join(EventStatus.ALL))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
DATETIME = {"type": "string", "format": "date-time"}

EVENT = {
    "type": "object",
    "required": [
        "id",
        "webhook_id",
        "source",
        "type",
        "resource_id",
        "status",
        "attempts",
        "received_at",
        "updated_at",
    ],
    "properties": {
        "id": INTEGER,
        "webhook_id": STRING,
        "source": {
            **STRING,
            "description": "webhook, ipn, catch_up, or the handler that created it: "
            "merchant_order, authorized_pay",
        },
        "type": STRING,
        "action": _nullable(STRING),
        "resource_id": STRING,
        "status": {"type": "string", "enum": list(EventStatus.ALL)},
        "attempts": INTEGER,
        "last_error": _nullable(STRING),
        "next_retry_at": _nullable(DATETIME),
        "received_at": DATETIME,
        "processed_at": _nullable(DATETIME),
        "updated_at": DATETIME,
        "purged_at": _nullable(
            {**DATETIME, "description": "when retention or an erasure dropped its stored copies"}
        ),
        "payment_id": _nullable({**STRING, "description": "the MercadoPago payment id"}),
    },
}

ATTEMPT = {
    "type": "object",
    "required": ["number", "started_at", "outcome"],
    "properties": {
        "number": INTEGER,
        "started_at": DATETIME,
        "finished_at": _nullable(DATETIME),
        "duration_ms": _nullable(INTEGER),
        "outcome": {
            "type": "string",
            "description": "running, success, ignored, retry, failed, lost, interrupted or busy",
        },
        "error": _nullable(STRING),
        "traceback": _nullable(STRING),
        "retryable": _nullable({"type": "boolean"}),
        "worker": _nullable(STRING),
    },
}

JOB = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": STRING,
        "status": {**STRING, "description": "RQ's job status: queued, scheduled, started, …"},
        "enqueued_at": _nullable(DATETIME),
        "scheduled_for": _nullable(DATETIME),
        "started_at": _nullable(DATETIME),
        "ended_at": _nullable(DATETIME),
        "exc_info": _nullable(STRING),
    },
}

EVENT_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/Event"},
        {
            "type": "object",
            "required": ["attempt_log", "rq"],
            "properties": {
                "attempt_log": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
                "payload": {"nullable": True, "description": "the notification's JSON body"},
                "headers": _nullable(
                    {"type": "object", "additionalProperties": {"type": "string"}}
                ),
                "query": _nullable({"type": "object", "additionalProperties": {"type": "string"}}),
                "rq": {
                    "type": "object",
                    "required": ["jobs", "error"],
                    "properties": {
                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                        "error": _nullable(STRING),
                    },
                },
            },
        },
    ]
}

PAYMENT = {
    "type": "object",
    "required": ["id", "mp_payment_id", "tags_applied", "created_at", "updated_at"],
    "properties": {
        "id": INTEGER,
        "mp_payment_id": STRING,
        "status": _nullable(STRING),
        "status_detail": _nullable(STRING),
        "amount": _nullable({**STRING, "description": "decimal, e.g. 100.00"}),
        "currency": _nullable(STRING),
        "payer_email": _nullable(STRING),
        "external_reference": _nullable(STRING),
        "mp_date_last_updated": _nullable(DATETIME),
        "ghl_contact_id": _nullable(STRING),
        "tags_applied": {"type": "array", "items": STRING},
        "crm_synced_at": _nullable(
            {**DATETIME, "description": "MercadoPago's date_last_updated of the data in the CRM"}
        ),
        "created_at": DATETIME,
        "updated_at": DATETIME,
    },
}

PAYMENT_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/Payment"},
        {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
            },
        },
    ]
}

RETRY_REPORT = {
    "type": "object",
    "required": [
        "requeued",
        "requeued_ids",
        "not_queued_ids",
        "refused",
        "missing_ids",
        "matched",
        "more",
        "dry_run",
    ],
    "properties": {
        "requeued": {**INTEGER, "description": "how many events were re-queued"},
        "requeued_ids": {"type": "array", "items": INTEGER},
        "not_queued_ids": {
            "type": "array",
            "items": INTEGER,
            "description": "re-queued but Redis was down: left pending, picked up later",
        },
        "refused": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "reason"],
                "properties": {"id": INTEGER, "reason": STRING},
            },
        },
        "missing_ids": {"type": "array", "items": INTEGER},
        "matched": {**INTEGER, "description": "events the filter matched (and were considered)"},
        "more": {"type": "boolean", "description": "the limit was reached: call again"},
        "dry_run": {"type": "boolean"},
    },
}

NULLABLE_NUMBER = {"type": "number", "nullable": True}
STATS = {
    "type": "object",
    "required": [
        "events",
        "total_events",
        "payments",
        "success_rate",
        "window_hours",
        "throughput",
        "latency",
        "queue",
        "oldest_pending",
        "generated_at",
    ],
    "properties": {
        "events": {
            "type": "object",
            "required": list(EventStatus.ALL),
            "properties": {status: INTEGER for status in EventStatus.ALL},
        },
        "total_events": INTEGER,
        "payments": INTEGER,
        "success_rate": {
            **NULLABLE_NUMBER,
            "description": "success / (success + failed), all time",
        },
        "window_hours": INTEGER,
        "throughput": {
            "type": "object",
            "required": ["bucket_minutes", "buckets", "total", "per_minute"],
            "properties": {
                "bucket_minutes": INTEGER,
                "buckets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["start", "count", "per_minute"],
                        "properties": {
                            "start": DATETIME,
                            "count": INTEGER,
                            "per_minute": {"type": "number"},
                            "by_status": {
                                "type": "object",
                                "description": "the bucket's events by their current status",
                                "additionalProperties": INTEGER,
                            },
                        },
                    },
                },
                "total": INTEGER,
                "per_minute": {"type": "number"},
            },
        },
        "latency": {
            "type": "object",
            "description": "seconds from receipt to success, events received in the window",
            "required": ["p50", "p95", "p99", "sample"],
            "properties": {
                "p50": NULLABLE_NUMBER,
                "p95": NULLABLE_NUMBER,
                "p99": NULLABLE_NUMBER,
                "sample": INTEGER,
            },
        },
        "queue": {
            "type": "object",
            "required": ["queued", "scheduled", "total", "error"],
            "properties": {
                "queue": _nullable(STRING),
                "queued": _nullable(INTEGER),
                "scheduled": _nullable(INTEGER),
                "started": _nullable(INTEGER),
                "failed": _nullable(INTEGER),
                "total": _nullable(INTEGER),
                "error": _nullable(STRING),
            },
        },
        "oldest_pending": {
            "type": "object",
            "required": ["received_at", "age_seconds"],
            "properties": {
                "received_at": _nullable(DATETIME),
                "age_seconds": NULLABLE_NUMBER,
            },
        },
        "breakers": {
            "type": "object",
            "description": "circuit breaker per upstream (see /api/processing)",
            "additionalProperties": {"$ref": "#/components/schemas/Breaker"},
        },
        "generated_at": DATETIME,
    },
}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": STRING}}


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or STRING,
    }


TIME_HELP = "ISO 8601 date or datetime (UTC unless it has an offset), or a time ago: 90m, 2h, 7d"
EVENT_FILTER_PARAMS = [
    _param(
        "status",
        "one or more comma-separated statuses",
        {"type": "string", "pattern": STATUS_LIST_PATTERN},
    ),
    _param("type", "notification type, e.g. payment", {"type": "string", "maxLength": 64}),
    _param("since", f"received at or after; {TIME_HELP}"),
    _param("until", f"received before (a bare date includes that day); {TIME_HELP}"),
    _param(
        "q",
        "webhook id or resource id (exact), or part of the payer's e-mail",
        {"type": "string", "maxLength": 255},
    ),
]
LIMIT = _param(
    "limit", "rows per page (capped at 500)", {"type": "integer", "minimum": 1, "default": 50}
)
CURSOR = _param("cursor", "`next_cursor` of the previous page")


JSON_BODY = (
    "optional; when sent, with `Content-Type: application/json` (any other type: 415). "
    f"Nested at most {MAX_JSON_DEPTH} levels."
)


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    described = {
        400: "a parameter or the body has a value that cannot be used",
        401: "missing or invalid bearer token",
        403: "refused: the request carries another site's `Origin`, or an account's token "
        "asks for a global operation or another account",
        404: "no such object",
        409: "the event cannot be retried in its current state",
        415: "a state-changing call without `Content-Type: application/json`",
        503: "the API is disabled (API_TOKEN is not set)",
    }
    responses: dict[str, Any] = {"200": ok}
    for code in (*codes, 401, 403, 503):
        responses[str(code)] = {
            "description": described[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# The bulk retry's `limit`: larger values are capped, not refused (see filters.parse_int).
_RETRY_LIMIT = {
    "type": "integer",
    "minimum": 1,
    "description": f"at most this many (capped at {BULK_RETRY_MAX})",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document() -> dict[str, Any]:
    """The whole document (a fresh copy: callers may change it)."""
    event_id = {
        "name": "event_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "format": "int64", "minimum": 1},
    }
    force = {"type": "boolean", "default": False, "description": "also retry a success event"}
    from . import openapi_accounts
    from .openapi_resources import SCHEMAS, resource_paths

    document = _document(event_id, force)
    document["paths"].update(resource_paths())
    openapi_accounts.add_account_scope(document)
    document["paths"].update(openapi_accounts.account_paths())
    document["components"]["schemas"].update(SCHEMAS)
    document["components"]["schemas"].update(openapi_accounts.SCHEMAS)
    return copy.deepcopy(document)


def _document(event_id: dict[str, Any], force: dict[str, Any]) -> dict[str, Any]:
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "MercadoPago webhook reliability service",
            "version": "1.0",
            "description": "Webhook events as received, their processing attempts, the "
            "payments they touched, retries and operating numbers. Times are UTC.",
        },
        "servers": [{"url": "/"}],
        # Bearer only: Basic credentials are the browser's (admin, /rq) and a
        # browser attaches them to any site's requests (see blueprints/api.py).
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/webhook-events": {
                "get": {
                    "operationId": "listEvents",
                    "summary": "Events, newest first, filtered, a page at a time",
                    "parameters": [
                        *EVENT_FILTER_PARAMS,
                        LIMIT,
                        CURSOR,
                        _param(
                            "order",
                            "by received time",
                            {"type": "string", "enum": ["desc", "asc"], "default": "desc"},
                        ),
                    ],
                    "responses": _responses(
                        _ok(
                            "a page of events",
                            {
                                "type": "object",
                                "required": ["events", "total", "total_exact", "next_cursor"],
                                "properties": {
                                    "events": {"type": "array", "items": _ref("Event")},
                                    "total": {
                                        **INTEGER,
                                        "description": (
                                            f"matching events, counted up to {COUNT_CAP}"
                                        ),
                                    },
                                    "total_exact": {
                                        "type": "boolean",
                                        "description": "false: there are more than `total`",
                                    },
                                    "next_cursor": _nullable(STRING),
                                },
                            },
                        ),
                        400,
                    ),
                }
            },
            "/api/webhook-events/{event_id}": {
                "get": {
                    "operationId": "getEvent",
                    "summary": "One event: payload, headers, attempts, jobs in Redis",
                    "parameters": [event_id],
                    "responses": _responses(_ok("the event", _ref("EventDetail")), 404),
                }
            },
            "/api/webhook-events/{event_id}/retry": {
                "post": {
                    "operationId": "retryEvent",
                    "summary": "Re-queue one event with a fresh retry budget",
                    "parameters": [event_id],
                    "requestBody": {
                        "required": False,
                        "description": JSON_BODY,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"force": force}}
                            }
                        },
                    },
                    "responses": _responses(
                        _ok(
                            "re-queued",
                            {
                                "type": "object",
                                "required": ["requeued", "queued", "event"],
                                "properties": {
                                    "requeued": INTEGER,
                                    "queued": {
                                        "type": "boolean",
                                        "description": "false: Redis was down; left pending",
                                    },
                                    "event": _ref("Event"),
                                },
                            },
                        ),
                        400,
                        404,
                        409,
                        415,
                    ),
                }
            },
            "/api/webhook-events/retry": {
                "post": {
                    "operationId": "retryEvents",
                    "summary": "Re-queue every event matching a filter (default: failed ones)",
                    "requestBody": {
                        "required": False,
                        "description": JSON_BODY,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        **{p["name"]: p["schema"] for p in EVENT_FILTER_PARAMS},
                                        "force": force,
                                        "dry_run": {
                                            "type": "boolean",
                                            "default": False,
                                            "description": "only count what would be re-queued",
                                        },
                                        "limit": _RETRY_LIMIT,
                                    },
                                }
                            }
                        },
                    },
                    "responses": _responses(_ok("what was done", _ref("RetryReport")), 400, 415),
                }
            },
            "/api/payments": {
                "get": {
                    "operationId": "listPayments",
                    "summary": "Payments, most recently updated first",
                    "parameters": [
                        _param(
                            "status",
                            "MercadoPago payment status, e.g. approved",
                            {"type": "string", "pattern": "^[a-z_]{1,32}$"},
                        ),
                        _param(
                            "q",
                            "payment id or external reference (exact), or part of the e-mail",
                            {"type": "string", "maxLength": 255},
                        ),
                        LIMIT,
                        CURSOR,
                    ],
                    "responses": _responses(
                        _ok(
                            "a page of payments",
                            {
                                "type": "object",
                                "required": ["payments", "next_cursor"],
                                "properties": {
                                    "payments": {"type": "array", "items": _ref("Payment")},
                                    "next_cursor": _nullable(STRING),
                                },
                            },
                        ),
                        400,
                    ),
                }
            },
            "/api/payments/{mp_id}": {
                "get": {
                    "operationId": "getPayment",
                    "summary": "One payment by MercadoPago id, with the events that touched it",
                    "parameters": [
                        {"name": "mp_id", "in": "path", "required": True, "schema": STRING}
                    ],
                    "responses": _responses(_ok("the payment", _ref("PaymentDetail")), 404),
                }
            },
            "/api/stats": {
                "get": {
                    "operationId": "stats",
                    "summary": "Counts, success rate, throughput, latency, queue depth",
                    "parameters": [
                        _param(
                            "hours",
                            "window for throughput and latency (capped at 168)",
                            {"type": "integer", "minimum": 1, "default": 1},
                        )
                    ],
                    "responses": _responses(_ok("the numbers", _ref("Stats")), 400),
                }
            },
            # h6: pause, resume, breakers
            **openapi_processing.paths(_responses, _ok),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API_TOKEN (every account), or an account's token "
                    "(`flask webhooks accounts token SLUG`: that account only)",
                },
            },
            "schemas": {
                "Event": EVENT,
                "EventDetail": EVENT_DETAIL,
                "Attempt": ATTEMPT,
                "Job": JOB,
                "Payment": PAYMENT,
                "PaymentDetail": PAYMENT_DETAIL,
                "RetryReport": RETRY_REPORT,
                "Stats": STATS,
                "Error": ERROR,
                **openapi_processing.SCHEMAS,
            },
        },
    }
    return document
