"""Thin client for the MercadoPago payments API (read-only).

Endpoints: `GET /v1/payments/{id}`, `GET /v1/payments/search`, `GET /merchant_orders/{id}`,
`GET /v1/chargebacks/{id}`, `GET /preapproval/{id}`, `GET /authorized_payments/{id}` and
`GET /post-purchase/v1/claims/{id}`. No retries
happen here; failures raise the typed errors from `.errors` for the caller's
retry policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
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

# How far MercadoPago's timestamps may run ahead of this machine's clock.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)

SERVICE = "mercadopago"
SEARCH_PATH = "/v1/payments/search"


def format_mp_datetime(value: datetime) -> str:
    """Render a datetime the way MercadoPago's search expects it.

    MercadoPago documents `yyyy-MM-dd'T'HH:mm:ss.SSSZ` and its examples use a
    numeric offset (`...000-04:00`); we send UTC as `-00:00`, which also needs
    no URL escaping (unlike `+`). A naive datetime is taken as UTC, like the
    rest of the app.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}-00:00"


def parse_mp_datetime(value: str | None) -> datetime | None:
    """Parse a MercadoPago timestamp (`2026-11-29T10:00:00.000-04:00`) to an aware UTC datetime.

    Returns None for None/empty; raises ValueError for anything else unparsable.
    """
    if not value:
        return None
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class MercadoPagoClient(ApiClient):
    """Reads payments from MercadoPago with a bearer access token."""

    DEFAULT_BASE_URL = "https://api.mercadopago.com"

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self._http = ApiHttpClient(
            service=SERVICE,
            base_url=base_url,
            token=access_token,
            timeout=timeout,
            session=session,
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], session: requests.Session | None = None
    ) -> MercadoPagoClient:
        """Build from the Flask config: MP_ACCESS_TOKEN, MP_API_BASE_URL, HTTP_TIMEOUT (and a
        session to share with other clients of the same base URL, if given)."""
        return cls(
            config_required(config, "MP_ACCESS_TOKEN", "the MercadoPago API client"),
            base_url=config_base_url(config, "MP_API_BASE_URL", cls.DEFAULT_BASE_URL),
            timeout=config_timeout(config),
            session=session,
        )

    def __repr__(self) -> str:
        return f"MercadoPagoClient(base_url={self.base_url!r})"

    def get_payment(self, payment_id: str | int) -> dict[str, Any]:
        """Fetch one payment.

        A 404 raises a *retryable* NotFoundError: MercadoPago can notify before
        the payment is readable, so "not found yet" is worth retrying.
        """
        path = f"/v1/payments/{path_segment(payment_id, 'payment_id')}"
        payload = self._http.request_json("GET", path, not_found_retryable=True)
        return self._http.expect_object("GET", path, payload)

    def get_merchant_order(self, order_id: str | int) -> dict[str, Any]:
        """Fetch one merchant order (`GET /merchant_orders/{id}`).

        Shape: mercadopago.com developers, reference/merchant_orders/_merchant_orders_id/get
        (id, status, order_status, external_reference, preference_id, payments[], paid_amount,
        total_amount, last_updated…); sdk-python resources/merchant_order.py uses the same
        path. Its `payer.email` is deprecated (empty): the payments carry the e-mail. A 404
        is retryable, as for payments: the order can be notified before it is readable.
        """
        path = f"/merchant_orders/{path_segment(order_id, 'order_id')}"
        payload = self._http.request_json("GET", path, not_found_retryable=True)
        return self._http.expect_object("GET", path, payload)

    def get_chargeback(self, chargeback_id: str | int) -> dict[str, Any]:
        """Fetch one chargeback (`GET /v1/chargebacks/{id}`).

        Shape: mercadopago.com developers, reference/chargebacks/_chargebacks_id/get (id,
        payments[], currency, amount, coverage_applied, coverage_elegible,
        documentation_required, documentation_status, date_documentation_deadline,
        date_created, date_last_updated, live_mode); sdk-python resources/chargeback.py
        uses the same path. A 404 is retryable: a live chargeback can be notified first.
        """
        path = f"/v1/chargebacks/{path_segment(chargeback_id, 'chargeback_id')}"
        payload = self._http.request_json("GET", path, not_found_retryable=True)
        return self._http.expect_object("GET", path, payload)

    def get_preapproval(self, preapproval_id: str) -> dict[str, Any]:
        """Fetch one subscription (preapproval): `GET /preapproval/{id}`.

        Source: mercadopago.com developers, reference "subscriptions/get-preapproval"
        (id, payer_email, status pending|authorized|paused|cancelled, reason,
        preapproval_plan_id, external_reference, next_payment_date, last_modified,
        auto_recurring {frequency, frequency_type, transaction_amount, currency_id});
        mercadopago/sdk-python `resources/preapproval.py` (`get`: "/preapproval/" + id).
        A 404 is retryable, like a payment's (notified before readable).
        """
        path = f"/preapproval/{path_segment(preapproval_id, 'preapproval_id')}"
        payload = self._http.request_json("GET", path, not_found_retryable=True)
        return self._http.expect_object("GET", path, payload)

    def get_authorized_payment(self, authorized_payment_id: str | int) -> dict[str, Any]:
        """Fetch one recurring charge of a subscription: `GET /authorized_payments/{id}`.

        Source: mercadopago/sdk-nodejs `src/clients/invoice/get/index.ts` (the path) and
        `src/clients/invoice/commonTypes.ts` `InvoiceResponse` (id, type, date_created,
        last_modified, preapproval_id, reason, external_reference, currency_id,
        transaction_amount, debit_date, retry_attempt, status scheduled|processed|recycling|
        cancelled, summarized, payer_id, payment {id, status, status_detail}); mercadopago/
        sdk-java `resources/authorizedpayment/AuthorizedPayment.java` (`Long id`);
        mercadopago.com developers, reference "subscriptions/_authorized_payments_id/get".
        A 404 is retryable, like a payment's (notified before readable).
        """
        segment = path_segment(authorized_payment_id, "authorized_payment_id")
        path = f"/authorized_payments/{segment}"
        payload = self._http.request_json("GET", path, not_found_retryable=True)
        return self._http.expect_object("GET", path, payload)

    def get_claim(self, claim_id: str) -> dict[str, Any]:
        """Fetch one claim: `GET /post-purchase/v1/claims/{claim_id}`.

        Source: mercadopago.com developers, reference "claims/get-claim-details" (id,
        resource ("payment" …), resource_id, status opened|closed, type mediations|
        cancel_purchase|return, stage claim|dispute|recontact, reason_id, players).
        """
        path = f"/post-purchase/v1/claims/{path_segment(claim_id, 'claim_id')}"
        payload = self._http.request_json("GET", path, not_found_retryable=True)
        return self._http.expect_object("GET", path, payload)

    def search_payments(
        self,
        *,
        begin_date: datetime,
        end_date: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
        criteria: str = "asc",
    ) -> dict[str, Any]:
        """One page of payments whose `date_last_updated` is in [begin_date, end_date].

        `end_date` defaults to now. Returns MercadoPago's
        `{"paging": {"total", "limit", "offset"}, "results": [...]}`.
        """
        if criteria not in ("asc", "desc"):
            raise ValueError(f"criteria must be 'asc' or 'desc', got {criteria!r}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        params = {
            "sort": "date_last_updated",
            "criteria": criteria,
            "range": "date_last_updated",
            "begin_date": format_mp_datetime(begin_date),
            "end_date": format_mp_datetime(end_date or datetime.now(UTC)),
            "offset": offset,
            "limit": limit,
        }
        payload = self._http.expect_object(
            "GET",
            SEARCH_PATH,
            self._http.request_json("GET", SEARCH_PATH, params=params),
        )
        if not isinstance(payload.get("results"), list):
            raise self._http.unexpected_response(
                "GET", SEARCH_PATH, "'results' is not a list", payload
            )
        if not isinstance(payload.get("paging", {}), dict):
            raise self._http.unexpected_response(
                "GET", SEARCH_PATH, "'paging' is not an object", payload
            )
        return payload

    def iter_payments_updated_since(
        self, since: datetime, *, page_size: int = 50, max_pages: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Yield payments updated from `since` until now (plus clock skew), oldest first.

        Pages through `search_payments` until `paging.total` is reached, a page
        is empty, or `max_pages` pages were read (then a warning is logged; resume
        with `since=parse_mp_datetime(last["date_last_updated"])`). The window's
        end is fixed when iteration starts so later updates do not shift pages.
        A payment updated *during* iteration can still move and be skipped, so
        callers should overlap successive windows; each id is yielded at most once.
        """
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        # The end is fixed, with room for MercadoPago's clock running ahead of ours:
        # a payment stamped "in the future" by a few seconds must not fall outside.
        end_date = datetime.now(UTC) + CLOCK_SKEW_ALLOWANCE
        offset = 0
        seen: set[Any] = set()
        last: dict[str, Any] | None = None
        total: Any = None
        for _ in range(max_pages):
            page = self.search_payments(
                begin_date=since, end_date=end_date, offset=offset, limit=page_size
            )
            results = page["results"]
            total = page.get("paging", {}).get("total")
            for payment in results:
                payment_id = payment.get("id") if isinstance(payment, dict) else None
                if payment_id is not None:
                    if payment_id in seen:  # offset paging can repeat an item
                        continue
                    seen.add(payment_id)
                last = payment
                yield payment
            # Advance by what was returned, not by page_size: MercadoPago may
            # cap `limit` below what we asked for.
            offset += len(results)
            if not results:
                return
            if isinstance(total, int):
                if offset >= total:
                    return
            elif len(results) < page_size:  # no total: a short page is the last one
                return
        logger.warning(
            "MercadoPago search stopped after max_pages=%d (%d payments read, %s reported); "
            "resume from date_last_updated=%s",
            max_pages,
            offset,
            total if isinstance(total, int) else "no total",
            last.get("date_last_updated") if isinstance(last, dict) else None,
        )
