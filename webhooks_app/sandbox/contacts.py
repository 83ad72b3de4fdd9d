"""GoHighLevel contact records: validation, upsert and tags.

Pure functions over plain dicts; `SandboxState` stores the dicts and holds the lock.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any

# Loose on purpose: GHL's validator rejects obvious garbage, not unusual addresses.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ID_ALPHABET = string.ascii_letters + string.digits

# Upsert body fields copied onto the contact when present and not null.
CONTACT_FIELDS = (
    "firstName",
    "lastName",
    "name",
    "phone",
    "source",
    "companyName",
    "address1",
    "city",
    "state",
    "country",
    "postalCode",
    "website",
    "timezone",
    "gender",
    "dnd",
    "assignedTo",
)


def format_ghl_time(value: datetime) -> str:
    """Render a datetime as GoHighLevel does ("2026-05-05T15:12:41.809Z")."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_contact_id(rng: random.Random) -> str:
    """A 20-character id shaped like GoHighLevel's ("sx6wyHhbFdRXh302LLNR")."""
    return "".join(rng.choices(_ID_ALPHABET, k=20))


def upsert_errors(body: Any) -> list[str]:
    """Validation messages for an upsert body (empty when valid), in GHL's 422 style.

    UpsertContactDto (GoHighLevel/highlevel-api-docs, apps/contacts.json) requires only
    `locationId`, but the real API needs an e-mail or a phone to match the contact by
    (highlevel-api-docs issue #59), so one of them is required here; both are checked
    when given.
    """
    if not isinstance(body, Mapping):
        return ["body must be a JSON object"]
    errors = []
    if not isinstance(body.get("locationId"), str) or not body["locationId"]:
        errors.append("locationId must be a string")
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.fullmatch(email.strip())):
        errors.append("email must be an email")
    phone = body.get("phone")
    if phone is not None and (not isinstance(phone, str) or not _digits(phone)):
        errors.append("phone must be a valid phone number")
    if not match_keys(body) and not errors:
        errors.append("email or phone is required")
    if "tags" in body and body["tags"] is not None:
        try:
            normalise_tags(body["tags"])
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def _digits(phone: str) -> str:
    return "".join(char for char in phone if char.isdigit())


def match_keys(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Match keys of an upsert body or a contact: ("email", lower-cased), then ("phone", digits)."""
    keys = []
    email = record.get("email")
    if isinstance(email, str) and email.strip():
        keys.append(("email", email.strip().lower()))
    phone = record.get("phone")
    if isinstance(phone, str) and _digits(phone):
        keys.append(("phone", _digits(phone)))
    return keys


def normalise_tags(tags: Any) -> list[str]:
    """Validate a tag list; GHL stores tags trimmed and lower-cased, without duplicates."""
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("tags must be an array of strings")
    result: list[str] = []
    for tag in tags:
        tag = tag.strip().lower()
        if tag and tag not in result:
            result.append(tag)
    return result


def new_contact(contact_id: str, body: Mapping[str, Any], now: str) -> dict[str, Any]:
    """Build a contact from a valid upsert body.

    Like GHL, fields without a value are left out rather than sent as null.
    """
    contact: dict[str, Any] = {
        "id": contact_id,
        "locationId": body["locationId"],
        "type": "lead",
        "tags": [],
        "customFields": [],
        "dnd": False,
        "dateAdded": now,
        "dateUpdated": now,
    }
    return apply_upsert(contact, body, now)


def apply_upsert(contact: dict[str, Any], body: Mapping[str, Any], now: str) -> dict[str, Any]:
    """Update `contact` in place from an upsert body; null or absent fields are kept.

    Like the real API, `tags` in an upsert body replace the contact's tags; the
    tags endpoints are the way to add or remove one without touching the rest.
    """
    email = body.get("email")
    if isinstance(email, str) and email.strip():
        contact["email"] = email.strip()
        contact["emailLowerCase"] = email.strip().lower()
    for name in CONTACT_FIELDS:
        if body.get(name) is not None:
            contact[name] = body[name]
    if body.get("tags") is not None:
        contact["tags"] = normalise_tags(body["tags"])
    if isinstance(body.get("customFields"), list):
        merge_custom_fields(contact, body["customFields"])
    first, last = contact.get("firstName"), contact.get("lastName")
    if not contact.get("name") and (first or last):
        contact["name"] = " ".join(part for part in (first, last) if part)
    for field, value in (("firstNameLowerCase", first), ("lastNameLowerCase", last)):
        if value:
            contact[field] = value.lower()
    contact["dateUpdated"] = now
    return contact


def merge_custom_fields(contact: dict[str, Any], fields: list[Any]) -> None:
    """Set the upsert's custom fields (`{"id" | "key", "field_value"}`) on the contact,
    stored as GHL answers them (CustomFieldSchema `{"id", "value"}`; the sandbox has no
    field definitions, so a key stands for its field's id); other fields are kept."""
    stored = {field["id"]: field for field in contact.setdefault("customFields", [])}
    for field in fields:
        if not isinstance(field, Mapping):
            continue
        field_id = field.get("id") or field.get("key")
        if isinstance(field_id, str) and field_id:
            stored[field_id] = {"id": field_id, "value": field.get("field_value")}
    contact["customFields"] = list(stored.values())


def add_tags(contact: dict[str, Any], tags: list[str]) -> list[str]:
    """Add normalised tags, keeping one copy of each; return all tags."""
    for tag in tags:
        if tag not in contact["tags"]:
            contact["tags"].append(tag)
    return list(contact["tags"])


def remove_tags(contact: dict[str, Any], tags: list[str]) -> list[str]:
    """Remove normalised tags (absent ones are ignored); return the remaining tags."""
    contact["tags"] = [tag for tag in contact["tags"] if tag not in tags]
    return list(contact["tags"])
