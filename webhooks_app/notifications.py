"""Turn an incoming HTTP request into a Notification, or say clearly why not.

MercadoPago sends two forms:
- Webhooks: a JSON body `{"id", "type", "action", "data": {"id"}}`, with
  `?data.id=…&type=…` in the query; signed with `x-signature`.
- IPN (legacy): `?topic=payment&id=…`, usually with an empty body; unsigned.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .json_input import JsonInputError, parse_json

KEPT_HEADERS = ("content-type", "user-agent", "x-request-id", "x-signature", "x-forwarded-for")
# Matched with fullmatch, never `$`: `$` also matches before a final "\n", so "payment\n"
# would pass as a type and "780\n" as a notification id distinct from "780".
# Payment ids are digits; order ids are like ORD01JQ4S4KY8HWQ6NA5PXB65B3D3; nothing else
# MercadoPago names (merchant orders, chargebacks, preapprovals) leaves letters, digits, - and _.
RESOURCE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
ACTION_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # payment.created, state_FINISHED, …
NOTIFICATION_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class InvalidNotification(ValueError):
    """The request is not a notification we can store; `status_code` is the answer to give."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class Notification:
    """What we store about one notification before processing it."""

    source: str  # "webhook" or "ipn"
    webhook_id: str
    type: str
    action: str | None
    resource_id: str
    payload: Any
    raw_body: str
    headers: dict[str, str]
    query: dict[str, str]

    @property
    def signed_data_id(self) -> str | None:
        """The `data.id` MercadoPago signs: the query string's."""
        return self.query.get("data.id")


def parse_notification(
    body: bytes, content_type: str | None, query: Mapping[str, str], headers: Mapping[str, str]
) -> Notification:
    """Parse and validate a request; raise InvalidNotification with the status to answer."""
    query = {key: str(value) for key, value in query.items()}
    kept_headers = {name: headers[name] for name in KEPT_HEADERS if headers.get(name)}
    try:
        raw_body = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidNotification("the body is not UTF-8 text", 400) from None
    payload = _parse_body(raw_body, content_type)

    if "topic" in query:
        return _parse_ipn(payload, raw_body, kept_headers, query)
    if payload is None:
        if "id" in query and "data.id" not in query:
            raise InvalidNotification("an IPN notification needs ?topic=… with ?id=…", 400)
        raise InvalidNotification(
            "empty body: expected a MercadoPago notification (JSON body, or ?topic=…&id=… for IPN)",
            400,
        )
    return _parse_webhook(payload, raw_body, kept_headers, query)


def _parse_body(raw_body: str, content_type: str | None) -> dict[str, Any] | None:
    if not raw_body.strip():
        return None
    try:
        # Nesting is capped before parsing: a value ~1,000 deep parses, then breaks the INSERT.
        payload = parse_json(raw_body)
    except JsonInputError as exc:
        if content_type and "json" in content_type.lower():
            raise InvalidNotification(str(exc), 400) from None
        raise InvalidNotification(
            f"unsupported content ({content_type or 'no content type'}): "
            "MercadoPago notifications are JSON",
            415,
        ) from None
    if not isinstance(payload, dict):
        raise InvalidNotification("the JSON body must be an object", 400)
    try:
        # NaN and Infinity parse, but no database stores them in a JSON column: refused
        # here (400) rather than failing the INSERT (a 503 the sender would retry for days).
        json.dumps(payload, allow_nan=False)
    except ValueError:
        raise InvalidNotification("the JSON body holds NaN or Infinity", 400) from None
    return payload


def _parse_webhook(
    payload: dict[str, Any], raw_body: str, headers: dict[str, str], query: dict[str, str]
) -> Notification:
    data = payload.get("data")
    if data is not None and not isinstance(data, dict):
        raise InvalidNotification('data must be an object like {"id": "…"}', 400)
    body_resource = data.get("id") if data else None
    query_resource = query.get("data.id")
    if body_resource is not None and query_resource and str(body_resource) != query_resource:
        raise InvalidNotification("data.id in the query and in the body disagree", 400)
    resource_id = _valid_resource_id(query_resource or body_resource)
    event_type = _valid_type(payload.get("type") or query.get("type"))
    action = payload.get("action")
    if action is not None and not (isinstance(action, str) and ACTION_PATTERN.fullmatch(action)):
        raise InvalidNotification("action must be a short name like payment.updated", 400)

    notification_id = payload.get("id")
    if notification_id is not None and not (
        isinstance(notification_id, (str, int))
        and not isinstance(notification_id, bool)
        and NOTIFICATION_ID_PATTERN.fullmatch(str(notification_id))
    ):
        raise InvalidNotification("id must be MercadoPago's notification id (a number)", 400)
    if notification_id is not None:
        webhook_id = f"mp:{notification_id}"
    else:
        # No notification id: a redelivery still carries the same request id and body.
        webhook_id = "mp-derived:" + _digest(headers.get("x-request-id"), raw_body)
    return Notification(
        source="webhook",
        webhook_id=webhook_id[:255],
        type=event_type,
        action=action,
        resource_id=resource_id,
        payload=payload,
        raw_body=raw_body,
        headers=headers,
        query=query,
    )


def _parse_ipn(
    payload: dict[str, Any] | None, raw_body: str, headers: dict[str, str], query: dict[str, str]
) -> Notification:
    topic = _valid_type(query.get("topic"))
    resource = query.get("id")
    if not resource and payload and isinstance(payload.get("resource"), str):
        # Some IPNs carry the resource URL in the body: take its last path segment.
        resource = payload["resource"].rstrip("/").rsplit("/", 1)[-1]
    resource_id = _valid_resource_id(resource)
    # IPN has no notification id. MercadoPago's redeliveries carry the same
    # x-request-id; without one, the same topic+id+body is treated as the same notification.
    webhook_id = f"ipn:{topic}:{resource_id}:" + _digest(headers.get("x-request-id"), raw_body)
    return Notification(
        source="ipn",
        webhook_id=webhook_id[:255],
        type=topic,
        action=None,
        resource_id=resource_id,
        payload=payload,
        raw_body=raw_body,
        headers=headers,
        query=query,
    )


def _valid_resource_id(value: Any) -> str:
    if value is None or value == "":
        raise InvalidNotification("missing resource id (data.id, or id for IPN)", 400)
    # Not stripped: the value stored is the value the signature covered, byte for byte.
    text = str(value)
    if isinstance(value, bool) or not RESOURCE_ID_PATTERN.fullmatch(text):
        raise InvalidNotification("resource id must be 1-64 letters, digits, '-' or '_'", 400)
    return text


def _valid_type(value: Any) -> str:
    if not value:
        raise InvalidNotification("missing notification type (type, or topic for IPN)", 400)
    if not isinstance(value, str) or not TYPE_PATTERN.fullmatch(value):
        raise InvalidNotification("notification type must be a short lower-case name", 400)
    return value


def _digest(request_id: str | None, raw_body: str) -> str:
    return hashlib.sha256(f"{request_id or ''}\n{raw_body}".encode()).hexdigest()[:32]
