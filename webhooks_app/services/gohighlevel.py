"""Thin client for the GoHighLevel (LeadConnector) API v2 contacts endpoints.

Endpoints: `POST /contacts/upsert`, `POST /contacts/{id}/tags` and
`DELETE /contacts/{id}/tags`, all with the `Version: 2021-07-28` header, shaped
as GoHighLevel's OpenAPI document says (GoHighLevel/highlevel-api-docs,
apps/contacts.json; checked by tests/test_contracts_gohighlevel.py). No retries
happen here; failures raise the typed errors from `.errors`.

Rate limits: GoHighLevel sends no Retry-After, only the X-RateLimit-* headers on
every response (https://marketplace.gohighlevel.com/docs/other/rate-limits). The
client keeps the last ones it saw in `last_rate_limit` (the shared limiter reads
them to slow down before a 429), and gives a 429 without Retry-After the burst
interval as its `retry_after`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from .errors import RateLimitedError
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


@dataclass(frozen=True)
class RateLimitInfo:
    """GoHighLevel's rate-limit headers of one response (None: header absent or unreadable)."""

    max: int | None  # X-RateLimit-Max: burst requests allowed per interval
    remaining: int | None  # X-RateLimit-Remaining: left in the current interval
    interval_ms: int | None  # X-RateLimit-Interval-Milliseconds
    daily_limit: int | None  # X-RateLimit-Limit-Daily
    daily_remaining: int | None  # X-RateLimit-Daily-Remaining
    seen_at: float  # time.time() when the response arrived

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], seen_at: float) -> RateLimitInfo | None:
        """Read the headers; None when the response carries none of them."""

        def number(name: str) -> int | None:
            value = headers.get(name)
            try:
                return int(value) if value is not None else None
            except ValueError:
                return None

        info = cls(
            max=number("X-RateLimit-Max"),
            remaining=number("X-RateLimit-Remaining"),
            interval_ms=number("X-RateLimit-Interval-Milliseconds"),
            daily_limit=number("X-RateLimit-Limit-Daily"),
            daily_remaining=number("X-RateLimit-Daily-Remaining"),
            seen_at=seen_at,
        )
        values = (info.max, info.remaining, info.interval_ms, info.daily_limit)
        if all(value is None for value in (*values, info.daily_remaining)):
            return None
        return info

    @property
    def interval_seconds(self) -> float | None:
        """The burst interval in seconds, if known and positive."""
        return self.interval_ms / 1000 if self.interval_ms and self.interval_ms > 0 else None

    @property
    def exhausted(self) -> bool:
        """True when no request is left in this interval or this day."""
        return self.remaining == 0 or self.daily_remaining == 0


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
        # The rate-limit headers of the last response (one client serves one location).
        self.last_rate_limit: RateLimitInfo | None = None
        self._http = ApiHttpClient(
            service=SERVICE,
            base_url=base_url,
            token=api_token,
            timeout=timeout,
            session=session,
            headers={"Version": self.API_VERSION},
            on_response=self._record_rate_limit,
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], session: requests.Session | None = None
    ) -> GoHighLevelClient:
        """Build from the Flask config (GHL_API_TOKEN, GHL_LOCATION_ID, GHL_API_BASE_URL, ...;
        and a session to share with other clients of the same base URL, if given)."""
        return cls(
            config_required(config, "GHL_API_TOKEN", "the GoHighLevel API client"),
            config_required(config, "GHL_LOCATION_ID", "the GoHighLevel API client"),
            base_url=config_base_url(config, "GHL_API_BASE_URL", cls.DEFAULT_BASE_URL),
            timeout=config_timeout(config),
            session=session,
        )

    def _record_rate_limit(self, response: requests.Response) -> None:
        info = RateLimitInfo.from_headers(response.headers, time.time())
        if info is not None:
            self.last_rate_limit = info

    def _request(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """One call; a 429 without Retry-After gets the burst interval as `retry_after`."""
        try:
            return self._http.request_json(method, path, json_body=body)
        except RateLimitedError as exc:
            info = self.last_rate_limit
            if exc.retry_after is None and info is not None and info.interval_seconds:
                # The window's reset time is not sent: waiting a whole interval is safe.
                exc.retry_after = info.interval_seconds
            raise

    def __repr__(self) -> str:
        return f"GoHighLevelClient(location_id={self.location_id!r}, base_url={self.base_url!r})"

    def upsert_contact(
        self,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        source: str | None = "mercadopago",
        custom_fields: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create or update the contact with this email (or phone); returns the contact.

        GoHighLevel matches an existing contact by the location's duplicate
        settings (email/phone); only `locationId` is required by the API, but
        without an e-mail or a phone there is nothing to match, so one is required
        here. Fields that are None or blank are not sent, so an upsert never
        erases a name or phone already stored on the contact. `custom_fields` go as
        UpsertContactDto's `customFields` (`[{"id" | "key": …, "field_value": …}]`).
        """
        if not any(isinstance(value, str) and value.strip() for value in (email, phone)):
            raise ValueError("an email or a phone is required to upsert a GoHighLevel contact")
        body: dict[str, Any] = {"locationId": self.location_id}
        optional = {
            "email": email,
            "firstName": first_name,
            "lastName": last_name,
            "phone": phone,
            "source": source,
        }
        for key, value in optional.items():
            if isinstance(value, str) and value.strip():
                body[key] = value.strip()
        if custom_fields:
            body["customFields"] = [dict(field) for field in custom_fields]
        path = "/contacts/upsert"
        payload = self._http.expect_object("POST", path, self._request("POST", path, body))
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
        payload = self._request(method, path, {"tags": _clean_tags(tags)})
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
