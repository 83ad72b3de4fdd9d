"""Thin client for the GoHighLevel (LeadConnector) API v2 contacts endpoints.

Endpoints: `POST /contacts/upsert`, `POST /contacts/{id}/tags` and
`DELETE /contacts/{id}/tags`, all with the `Version: 2021-07-28` header. No
retries happen here; failures raise the typed errors from `.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from .http import (
    DEFAULT_TIMEOUT,
    ApiClient,
    ApiHttpClient,
    config_base_url,
    config_required,
    config_timeout,
    path_segment,
)

logger = logging.getLogger(__name__)

SERVICE = "gohighlevel"


def _clean_tags(tags: Iterable[str]) -> list[str]:
    """Strip, drop blanks and duplicates (keeping order); at least one tag is required."""
    # A bare string is iterable: add_tags(id, "paid") would send ["p", "a", "i", "d"].
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError("tags must be a list of strings")
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be strings, got {type(tag).__name__}")
        tag = tag.strip()
        if tag and tag not in cleaned:
            cleaned.append(tag)
    if not cleaned:
        raise ValueError("at least one non-blank tag is required")
    return cleaned


class GoHighLevelClient(ApiClient):
    """Upserts contacts and manages their tags in one GoHighLevel location."""

    DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
    API_VERSION = "2021-07-28"

    def __init__(
        self,
        api_token: str,
        location_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(location_id, str) or not location_id.strip():
            raise ValueError("location_id is required for the GoHighLevel API client")
        self.location_id = location_id.strip()
        self._http = ApiHttpClient(
            service=SERVICE,
            base_url=base_url,
            token=api_token,
            timeout=timeout,
            session=session,
            headers={"Version": self.API_VERSION},
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GoHighLevelClient:
        """Build from the Flask config (GHL_API_TOKEN, GHL_LOCATION_ID, GHL_API_BASE_URL, ...)."""
        return cls(
            config_required(config, "GHL_API_TOKEN", "the GoHighLevel API client"),
            config_required(config, "GHL_LOCATION_ID", "the GoHighLevel API client"),
            base_url=config_base_url(config, "GHL_API_BASE_URL", cls.DEFAULT_BASE_URL),
            timeout=config_timeout(config),
        )

    def __repr__(self) -> str:
        return f"GoHighLevelClient(location_id={self.location_id!r}, base_url={self.base_url!r})"

    def upsert_contact(
        self,
        *,
        email: str,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        source: str | None = "mercadopago",
    ) -> dict[str, Any]:
        """Create or update the contact with this email; returns the contact (has "id").

        GoHighLevel matches an existing contact by the location's duplicate
        settings (email/phone). Fields that are None or blank are not sent, so
        an upsert never erases a name or phone already stored on the contact.
        """
        if not isinstance(email, str) or not email.strip():
            raise ValueError("email is required to upsert a GoHighLevel contact")
        body: dict[str, Any] = {"locationId": self.location_id, "email": email.strip()}
        optional = {
            "firstName": first_name,
            "lastName": last_name,
            "phone": phone,
            "source": source,
        }
        for key, value in optional.items():
            if isinstance(value, str) and value.strip():
                body[key] = value.strip()
        path = "/contacts/upsert"
        payload = self._http.expect_object(
            "POST", path, self._http.request_json("POST", path, json_body=body)
        )
        contact = payload.get("contact")
        if not isinstance(contact, dict) or not contact.get("id"):
            raise self._http.unexpected_response(
                "POST", path, "no contact id in the upsert response", payload
            )
        logger.debug(
            "GoHighLevel upsert: contact %s (new=%s, trace id %s)",
            contact["id"],
            payload.get("new"),
            payload.get("traceId"),
        )
        return contact

    def add_tags(self, contact_id: str, tags: list[str]) -> list[str]:
        """Add tags to a contact; returns the tags GoHighLevel reports back."""
        return self._change_tags("POST", contact_id, tags)

    def remove_tags(self, contact_id: str, tags: list[str]) -> list[str]:
        """Remove tags from a contact; returns the tags GoHighLevel reports back."""
        return self._change_tags("DELETE", contact_id, tags)

    def _change_tags(self, method: str, contact_id: str, tags: list[str]) -> list[str]:
        path = f"/contacts/{path_segment(contact_id, 'contact_id')}/tags"
        payload = self._http.request_json(method, path, json_body={"tags": _clean_tags(tags)})
        reported = payload.get("tags") if isinstance(payload, dict) else None
        if not isinstance(reported, list):
            # The change was accepted (2xx); failing here would make the caller
            # redo or abandon work that already happened, so only warn.
            logger.warning(
                "GoHighLevel %s %s returned no 'tags' list; treating as no tags reported",
                method,
                path,
            )
            return []
        return [str(tag) for tag in reported]
