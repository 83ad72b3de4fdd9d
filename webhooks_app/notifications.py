"""Turn an incoming HTTP request into a Notification, or say clearly why not.

MercadoPago sends two forms:
- Webhooks: a JSON body `{"id", "type", "action", "data": {"id"}}`, with
  `?data.id=…&type=…` in the query; signed with `x-signature`.
- IPN (legacy): `?topic=payment&id=…`, usually with an empty body; unsigned.

Some topics carry no `data.id` at all (MercadoPago developers, "Additional information
about notifications"): a fraud alert names its payment in `data.payment_id` (its
handler's `resource_id_from` says so), and topics this service does not handle come in
other shapes still (`delivery`: `{"_id", "topic", "resource": "/shipments/…"}`;
`automatic-payments`: `data.customer_id`). Those are keyed on their signed
`x-request-id` (`mp-request:<x-request-id>`), since the body that names them is not signed.
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


class IdSource:
    """Where a notification's resource id came from (what its signature can vouch for)."""

    QUERY = "query"  # the query string's data.id: the one MercadoPago signs
    BODY = "body"  # the body's data.id alone: no signature covers it
    TOPIC = "topic"  # no data.id; the topic's own field (a fraud alert's data.payment_id)
    NONE = "none"  # no data.id, a topic not handled here: derived for display, or ""


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
    id_source: str = IdSource.QUERY
    # The account it was sent to (accounts.py): the URL's, set by the webhook route.
    account_id: int = 1

    @property
    def signed_data_id(self) -> str | None:
        """The `data.id` MercadoPago signs: the query string's (None when absent or empty)."""
        return self.query.get("data.id") or None


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
    # `topic` in the body: the `delivery` form, which has no query string.
    event_type = _valid_type(payload.get("type") or query.get("type") or payload.get("topic"))
    resource_id, id_source = _webhook_resource(event_type, data or {}, payload, query)
    action = payload.get("action")
    if action is not None and not (isinstance(action, str) and ACTION_PATTERN.fullmatch(action)):
        raise InvalidNotification("action must be a short name like payment.updated", 400)

    # `_id`: the `delivery` form's notification id.
    notification_id = payload.get("id") if payload.get("id") is not None else payload.get("_id")
    if notification_id is not None and not (
        isinstance(notification_id, (str, int))
        and not isinstance(notification_id, bool)
        and NOTIFICATION_ID_PATTERN.fullmatch(str(notification_id))
    ):
        raise InvalidNotification("id must be MercadoPago's notification id (a number)", 400)
    request_id = headers.get("x-request-id")
    if id_source in (IdSource.TOPIC, IdSource.NONE) and request_id:
        # No data.id: the signature covers only x-request-id (and ts), so that is the key; a
        # captured signature replayed with another body is then a duplicate, not a new event.
        if not NOTIFICATION_ID_PATTERN.fullmatch(request_id):
            raise InvalidNotification("x-request-id must be 1-128 letters, digits or -_.:", 400)
        webhook_id = f"mp-request:{request_id}"
    elif notification_id is not None:
        webhook_id = f"mp:{notification_id}"
    else:
        # No notification id: a redelivery still carries the same request id and body.
        webhook_id = "mp-derived:" + _digest(request_id, raw_body)
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
        id_source=id_source,
    )


def _webhook_resource(
    event_type: str, data: dict[str, Any], payload: dict[str, Any], query: dict[str, str]
) -> tuple[str, str]:
    """The resource id and where it came from (`IdSource`)."""
    body_resource = data.get("id")
    if query.get("data.id"):
        resource_id = _valid_resource_id(query["data.id"])
        if body_resource is not None and str(body_resource) != resource_id:
            raise InvalidNotification("data.id in the query and in the body disagree", 400)
        return resource_id, IdSource.QUERY
    if body_resource is not None:
        if "data.id" in query:
            # An empty ?data.id= is signed as no id at all: it must not vouch for the body's.
            raise InvalidNotification("missing resource id: ?data.id= is empty", 400)
        return _valid_resource_id(body_resource), IdSource.BODY
    # No data.id anywhere (an empty ?data.id= is one left out, as in the signature).
    handler = _handler_for(event_type)
    if handler is None:
        return _derived_resource_id(data, payload), IdSource.NONE
    hook = getattr(handler, "resource_id_from", None)
    return _valid_resource_id(hook(payload) if hook else None), IdSource.TOPIC


def _handler_for(event_type: str) -> Any:
    # Imported here: the handlers import this module (they build Notifications).
    from .handlers import handler_for

    return handler_for(event_type)


def _derived_resource_id(data: dict[str, Any], payload: Mapping[str, Any] | None) -> str:
    """What a topic we do not handle is about, for the operator's eye only ("" if nothing
    fits the id alphabet): `data.customer_id` (automatic-payments), else the last segment
    of a body `resource` URL or path (delivery: "/shipments/12345")."""
    candidates = [data.get("customer_id")]
    resource = payload.get("resource") if payload else None
    if isinstance(resource, str):
        candidates.append(resource.rstrip("/").rsplit("/", 1)[-1])
    for value in candidates:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            if RESOURCE_ID_PATTERN.fullmatch(str(value)):
                return str(value)
    return ""


def _parse_ipn(
    payload: dict[str, Any] | None, raw_body: str, headers: dict[str, str], query: dict[str, str]
) -> Notification:
    topic = _valid_type(query.get("topic"))
    resource = query.get("id")
    if not resource and payload and isinstance(payload.get("resource"), str):
        # Some IPNs carry the resource URL in the body: take its last path segment.
        resource = payload["resource"].rstrip("/").rsplit("/", 1)[-1]
    # A topic we do not handle is stored (and ignored) even without one.
    unhandled_without_id = not resource and _handler_for(topic) is None
    resource_id = "" if unhandled_without_id else _valid_resource_id(resource)
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
