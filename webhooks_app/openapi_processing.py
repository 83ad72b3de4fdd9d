"""The `/api/processing` part of the OpenAPI document (merged in by openapi.py)."""

from __future__ import annotations

from typing import Any

from .pausing import MAX_REASON, STAGES, UPSTREAMS

STRING = {"type": "string"}
NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_DATETIME = {"type": "string", "format": "date-time", "nullable": True}
NULLABLE_NUMBER = {"type": "number", "nullable": True}
NULLABLE_INTEGER = {"type": "integer", "nullable": True}
STAGE = {"type": "string", "enum": list(STAGES), "default": "all"}

STAGE_STATE = {
    "type": "object",
    "required": ["paused"],
    "properties": {
        "paused": {"type": "boolean"},
        "paused_by": STRING,
        "reason": STRING,
        "paused_at": {"type": "string", "format": "date-time"},
    },
}

BREAKER = {
    "type": "object",
    "required": ["state", "needs_operator", "openings", "closings", "error"],
    "properties": {
        "state": {"type": "string", "enum": ["closed", "open", "half_open", "unknown"]},
        "opened_at": NULLABLE_DATETIME,
        "open_until": {**NULLABLE_DATETIME, "description": "null while open: operator needed"},
        "open_seconds": NULLABLE_NUMBER,
        "cooldown_seconds": NULLABLE_NUMBER,
        "reason": NULLABLE_STRING,
        "needs_operator": {"type": "boolean", "description": "401/403: resume after fixing"},
        "recent_failures": NULLABLE_INTEGER,
        "openings": NULLABLE_INTEGER,
        "closings": NULLABLE_INTEGER,
        "error": {**NULLABLE_STRING, "description": "Redis unreachable: state unknown"},
    },
}

PROCESSING = {
    "type": "object",
    "required": ["paused", "stages", "breakers", "history"],
    "properties": {
        "paused": {"type": "boolean", "description": "some stage is paused"},
        "stages": {
            "type": "object",
            "required": list(STAGES),
            "properties": {stage: {"$ref": "#/components/schemas/StageState"} for stage in STAGES},
        },
        "breakers": {
            "type": "object",
            "required": list(UPSTREAMS),
            "properties": {name: {"$ref": "#/components/schemas/Breaker"} for name in UPSTREAMS},
        },
        "history": {
            "type": "array",
            "description": "the latest pauses and resumes, newest first",
            "items": {
                "type": "object",
                "required": ["stage", "action", "actor", "at"],
                "properties": {
                    "stage": STRING,
                    "action": {"type": "string", "enum": ["pause", "resume"]},
                    "actor": STRING,
                    "reason": NULLABLE_STRING,
                    "at": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def paths(responses: Any, ok: Any) -> dict[str, Any]:
    """The operations, with openapi.py's `_responses` and `_ok` helpers."""
    with_changed = {
        "allOf": [
            _ref("Processing"),
            {
                "type": "object",
                "required": ["changed"],
                "properties": {"changed": {"type": "boolean"}},
            },
        ]
    }
    resumed = {
        "allOf": [
            _ref("Processing"),
            {
                "type": "object",
                "required": ["changed", "resumed", "enqueued"],
                "properties": {
                    "stage": STRING,
                    "changed": {"type": "boolean"},
                    "resumed": {"type": "array", "items": STRING},
                    "breakers_reset": {"type": "array", "items": STRING},
                    "enqueued": {"type": "integer", "description": "due events queued again"},
                    "redis_error": NULLABLE_STRING,
                },
            },
        ]
    }
    return {
        "/api/processing": {
            "get": {
                "operationId": "processingStatus",
                "summary": "Paused stages (who, when, why), circuit breakers, pause history",
                "responses": responses(ok("the state of processing", _ref("Processing"))),
            }
        },
        "/api/processing/pause": {
            "post": {
                "operationId": "pauseProcessing",
                "summary": "Pause processing, as a whole or one upstream stage",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {
                                "stage": STAGE,
                                "reason": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": MAX_REASON,
                                },
                            },
                        }
                    ),
                },
                "responses": responses(ok("paused (changed: false if it was)", with_changed), 400),
            }
        },
        "/api/processing/resume": {
            "post": {
                "operationId": "resumeProcessing",
                "summary": "Resume (all: every pause), close its breakers, drain in received order",
                "requestBody": {
                    "required": False,
                    **_json(
                        {
                            "type": "object",
                            "properties": {
                                "stage": STAGE,
                                # Only that account's breakers and events (its slug).
                                "account": STRING,
                            },
                        }
                    ),
                },
                "responses": responses(ok("resumed", resumed), 400),
            }
        },
    }


SCHEMAS = {"Processing": PROCESSING, "StageState": STAGE_STATE, "Breaker": BREAKER}
