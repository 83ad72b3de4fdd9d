"""Imitation of the GoHighLevel v2 contacts API (https://services.leadconnectorhq.com).

Routes, statuses and bodies follow GoHighLevel's OpenAPI document
(GoHighLevel/highlevel-api-docs, apps/contacts.json; vendored in tests/contracts/):
upsert answers 200 with {new, contact, traceId}, add tags 201 and remove tags 200
with {tags}. Every answer past authentication carries the rate-limit headers
(https://marketplace.gohighlevel.com/docs/other/rate-limits); a 429 has no Retry-After.
A location token works in its own location only (403 elsewhere; tenants.py).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.http import HTTP_STATUS_CODES

from . import contacts as ghl_contacts
from .faults import GOHIGHLEVEL
from .gate import admit, bearer_token, get_state, json_response, mark_api_call, set_call_key
from .tenants import WRONG_LOCATION

logger = logging.getLogger(__name__)

bp = Blueprint("sandbox_gohighlevel", __name__)

API_VERSION = "2021-07-28"
# Rate-limit bucket for calls whose location cannot be known (unknown contact id).
UNKNOWN_LOCATION = "-"


def ghl_error(status: int, message: Any = None) -> dict:
    """GoHighLevel's error body: {"statusCode", "message"[, "error"]}."""
    reason = HTTP_STATUS_CODES.get(status, "Error")
    body: dict[str, Any] = {"statusCode": status, "message": message or reason}
    if status in (401, 422):
        body["error"] = reason
    return body


def _check_headers() -> Response | None:
    """401 without a bearer token (one the sandbox knows, if any); 400 without `Version`."""
    token = bearer_token()
    if token is None or not get_state().ghl_token_accepted(token):
        return json_response(ghl_error(401, "Invalid JWT"), 401)
    version = request.headers.get("Version")
    if not version:
        return json_response(ghl_error(400, "version header was not found"), 400)
    if version != API_VERSION:
        return json_response(ghl_error(400, f"version must be {API_VERSION}"), 400)
    return None


def _check_location(location_id: Any) -> Response | None:
    """403 when the caller's location token is another location's (tenants.py); a body
    without a location is left to the validation (422)."""
    if not isinstance(location_id, str) or not location_id:
        return None
    if get_state().ghl_location_allowed(bearer_token() or "", location_id):
        return None
    return json_response(ghl_error(403, WRONG_LOCATION), 403)


def _contact_gate(
    contact_id: str, action: str | None = None
) -> tuple[dict | None, Response | None]:
    """Common start of the per-contact routes: headers, then faults keyed by its e-mail
    (or by `<e-mail>#<action>`: only that route's calls)."""
    mark_api_call(GOHIGHLEVEL)
    refusal = _check_headers()
    if refusal is not None:
        return None, refusal
    contact = get_state().get_contact(contact_id)
    email = (contact.get("emailLowerCase") or contact.get("phone")) if contact else None
    set_call_key(email)
    location = contact["locationId"] if contact else UNKNOWN_LOCATION
    refusal = (contact and _check_location(location)) or admit(
        GOHIGHLEVEL, email, ghl_error, bucket=location, action=action
    )
    if refusal is not None:
        return None, refusal
    if contact is None:
        return None, json_response(ghl_error(404, "Contact not found"), 404)
    return contact, None


def _tags_from_body() -> list[str] | Response:
    body = request.get_json(silent=True)
    try:
        return ghl_contacts.normalise_tags(body.get("tags") if isinstance(body, dict) else None)
    except ValueError as exc:
        return json_response(ghl_error(422, [str(exc)]), 422)


@bp.post("/contacts/upsert")
def upsert_contact() -> Response:
    """Create or update the contact with this e-mail (else phone) in this location.

    200 whether the contact is new or not: `new` tells (UpsertContactsSuccessfulResponseDto).
    """
    mark_api_call(GOHIGHLEVEL)
    body = request.get_json(silent=True)
    fields = body if isinstance(body, dict) else {}
    email, phone = fields.get("email"), fields.get("phone")
    # Faults and the call log are keyed by e-mail, or by phone when there is none.
    if isinstance(email, str) and email.strip():
        key = email.strip().lower()
    else:
        key = phone.strip() if isinstance(phone, str) and phone.strip() else None
    set_call_key(key)
    refusal = _check_headers()
    if refusal is not None:
        return refusal
    location = body.get("locationId") if isinstance(body, dict) else None
    refusal = _check_location(location) or admit(
        GOHIGHLEVEL, key, ghl_error, bucket=str(location or UNKNOWN_LOCATION)
    )
    if refusal is not None:
        return refusal
    errors = ghl_contacts.upsert_errors(body)
    if errors:
        return json_response(ghl_error(422, errors), 422)
    state = get_state()
    contact, is_new = state.upsert_contact(body)
    answer = {"new": is_new, "contact": contact, "traceId": state.new_trace_id()}
    return json_response(answer, 200)


@bp.get("/contacts/<contact_id>")
def get_contact(contact_id: str) -> Response:
    """One contact by id."""
    contact, refusal = _contact_gate(contact_id)
    if refusal is not None:
        return refusal
    return json_response({"contact": contact}, 200)  # ContactsByIdSuccessfulResponseDto


@bp.post("/contacts/<contact_id>/tags")
def add_tags(contact_id: str) -> Response:
    """Add tags; a tag the contact already has is kept once. 201 {tags} (documented)."""
    return _change_tags(contact_id, add=True, status=201)


@bp.delete("/contacts/<contact_id>/tags")
def remove_tags(contact_id: str) -> Response:
    """Remove tags (absent ones are no error). 200 {tags} (documented)."""
    return _change_tags(contact_id, add=False, status=200)


def _change_tags(contact_id: str, *, add: bool, status: int) -> Response:
    _, refusal = _contact_gate(contact_id, "add_tags" if add else "remove_tags")
    if refusal is not None:
        return refusal
    tags = _tags_from_body()
    if isinstance(tags, Response):
        return tags
    result = get_state().change_tags(contact_id, tags, add=add)
    if result is None:  # reset between the gate and here
        return json_response(ghl_error(404, "Contact not found"), 404)
    # CreateAddTagSuccessfulResponseDto / CreateDeleteTagSuccessfulResponseDto: {"tags"} only.
    return json_response({"tags": result}, status)
