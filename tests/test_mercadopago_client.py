"""Unit tests for MercadoPagoClient and the shared HTTP layer (HTTP stubbed with `responses`;
proxies and dropped connections on real loopback sockets)."""

from __future__ import annotations

import email.utils
import json
import logging
import pickle
import socket
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from webhooks_app.services import (
    ApiError,
    MercadoPagoClient,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    format_mp_datetime,
    parse_mp_datetime,
)

TOKEN = "APP_USR-7755331-112926-0c0ffee0c0ffee0c0ffee-424242"
BASE = "https://api.mercadopago.com"
PAYMENT_URL = f"{BASE}/v1/payments/1234567890"
SEARCH_URL = f"{BASE}/v1/payments/search"
SINCE = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

PAYMENT = {
    "id": 1234567890,
    "status": "approved",
    "status_detail": "accredited",
    "date_last_updated": "2026-11-29T10:05:00.000-04:00",
    "payer": {"email": "buyer@example.com"},
}
MP_NOT_FOUND = {
    "message": "Payment not found",
    "error": "not_found",
    "status": 404,
    "cause": [{"code": 2000, "description": "Payment not found", "data": None}],
}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Stub HTTP; every registered response must be used by the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def mp() -> MercadoPagoClient:
    return MercadoPagoClient(TOKEN)


def payment_error(mp: MercadoPagoClient) -> ApiError:
    with pytest.raises(ApiError) as info:
        mp.get_payment(1234567890)
    return info.value


def page(ids: list[int], total: int | None, offset: int = 0) -> dict[str, Any]:
    paging: dict[str, Any] = {"limit": len(ids), "offset": offset}
    if total is not None:
        paging["total"] = total
    return {
        "paging": paging,
        "results": [{"id": i, "date_last_updated": "2026-11-29T11:00:00.000-04:00"} for i in ids],
    }


# -- success paths and the requests they make -------------------------------


def test_get_payment_returns_the_payment_and_sends_auth_accept_user_agent_and_timeout(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, json=PAYMENT)

    assert mp.get_payment("1234567890") == PAYMENT

    request = mocked.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert "webhooks_app" in request.headers["User-Agent"]
    assert request.req_kwargs["timeout"] == (5.0, 10.0)


def test_custom_timeout_is_used_as_read_timeout_with_a_capped_connect_timeout(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(PAYMENT_URL, json=PAYMENT)
    MercadoPagoClient(TOKEN, timeout=2.5).get_payment(1234567890)
    assert mocked.calls[0].request.req_kwargs["timeout"] == (2.5, 2.5)


@pytest.mark.parametrize("base_url", ["https://mp.test", "https://mp.test/", "https://mp.test//"])
def test_base_url_with_or_without_trailing_slash(
    mocked: responses.RequestsMock, base_url: str
) -> None:
    mocked.get("https://mp.test/v1/payments/42", json={"id": 42})
    client = MercadoPagoClient(TOKEN, base_url=base_url)
    assert client.base_url == "https://mp.test"
    assert client.get_payment(42) == {"id": 42}


def test_base_url_path_prefix_is_kept(mocked: responses.RequestsMock) -> None:
    mocked.get("http://127.0.0.1:5001/mp/v1/payments/42", json={"id": 42})
    assert MercadoPagoClient(TOKEN, base_url="http://127.0.0.1:5001/mp/").get_payment(42)


def test_payment_id_is_quoted_so_it_cannot_reach_another_endpoint(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(f"{BASE}/v1/payments/1%2F..%2F..%2Fusers%2Fme", json={"id": 1})
    mp.get_payment("1/../../users/me")
    assert mocked.calls[0].request.path_url == "/v1/payments/1%2F..%2F..%2Fusers%2Fme"


@pytest.mark.parametrize("bad_id", ["", "  ", ".", ".."])
def test_blank_or_dot_payment_ids_are_rejected_before_any_request(
    mp: MercadoPagoClient, bad_id: str
) -> None:
    with (
        responses.RequestsMock() as rsps,
        pytest.raises(ValueError, match="payment_id"),
    ):
        mp.get_payment(bad_id)
    assert not rsps.calls


def test_search_payments_sends_the_documented_query(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    body = page([1, 2], total=2)
    mocked.get(
        SEARCH_URL,
        json=body,
        match=[
            matchers.query_param_matcher(
                {
                    "sort": "date_last_updated",
                    "criteria": "desc",
                    "range": "date_last_updated",
                    "begin_date": "2026-11-29T13:00:00.000-00:00",
                    "end_date": "2026-11-30T03:30:00.250-00:00",
                    "offset": "100",
                    "limit": "25",
                }
            ),
            matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"}),
        ],
    )
    result = mp.search_payments(
        begin_date=datetime(2026, 11, 29, 10, 0, tzinfo=timezone(timedelta(hours=-3))),
        end_date=datetime(2026, 11, 30, 3, 30, 0, 250_000, tzinfo=UTC),
        offset=100,
        limit=25,
        criteria="desc",
    )
    assert result == body


def test_search_payments_defaults_end_date_to_now_and_criteria_to_asc(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(SEARCH_URL, json=page([], total=0))
    before = datetime.now(UTC) - timedelta(seconds=1)
    mp.search_payments(begin_date=SINCE)
    after = datetime.now(UTC) + timedelta(seconds=1)

    params = mocked.calls[0].request.params
    assert params["criteria"] == "asc"
    assert params["offset"] == "0"
    assert params["limit"] == "50"
    assert before <= parse_mp_datetime(params["end_date"]) <= after


@pytest.mark.parametrize(
    "kwargs",
    [{"criteria": "up"}, {"offset": -1}, {"limit": 0}],
)
def test_search_payments_rejects_bad_arguments_before_any_request(
    mp: MercadoPagoClient, kwargs: dict[str, Any]
) -> None:
    with responses.RequestsMock() as rsps, pytest.raises(ValueError):
        mp.search_payments(begin_date=SINCE, **kwargs)
    assert not rsps.calls


@pytest.mark.parametrize(
    "body",
    [{"paging": {"total": 1}}, {"results": "nope"}, {"results": [], "paging": []}],
)
def test_search_payments_with_an_undocumented_shape_is_permanent(
    mocked: responses.RequestsMock, mp: MercadoPagoClient, body: dict[str, Any]
) -> None:
    mocked.get(SEARCH_URL, json=body)
    with pytest.raises(PermanentApiError, match="unexpected response"):
        mp.search_payments(begin_date=SINCE)


def test_format_mp_datetime_renders_utc_with_milliseconds() -> None:
    minus_four = timezone(timedelta(hours=-4))
    value = datetime(2026, 11, 29, 6, 0, 0, 123_456, tzinfo=minus_four)
    assert format_mp_datetime(value) == "2026-11-29T10:00:00.123-00:00"
    # Naive datetimes are UTC, as everywhere else in the app.
    assert format_mp_datetime(datetime(2026, 11, 29, 10, 0)) == "2026-11-29T10:00:00.000-00:00"


def test_parse_mp_datetime_handles_offsets_z_and_empty() -> None:
    expected = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    assert parse_mp_datetime("2026-11-29T10:00:00.000-04:00") == expected
    assert parse_mp_datetime("2026-11-29T14:00:00Z") == expected
    assert parse_mp_datetime(None) is None
    assert parse_mp_datetime("") is None
    with pytest.raises(ValueError):
        parse_mp_datetime("yesterday")


# -- iter_payments_updated_since ---------------------------------------------


def search_stub(
    mocked: responses.RequestsMock, offset: int, limit: int, body: dict[str, Any]
) -> None:
    mocked.get(
        SEARCH_URL,
        json=body,
        match=[
            matchers.query_param_matcher(
                {"offset": str(offset), "limit": str(limit), "criteria": "asc"},
                strict_match=False,
            )
        ],
    )


def test_iteration_pages_until_total_and_keeps_one_window(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    search_stub(mocked, 0, 2, page([1, 2], total=5))
    search_stub(mocked, 2, 2, page([3, 4], total=5, offset=2))
    search_stub(mocked, 4, 2, page([5], total=5, offset=4))

    payments = list(mp.iter_payments_updated_since(SINCE, page_size=2))

    assert [p["id"] for p in payments] == [1, 2, 3, 4, 5]
    assert len(mocked.calls) == 3
    params = [call.request.params for call in mocked.calls]
    assert {p["begin_date"] for p in params} == {"2026-11-29T10:00:00.000-00:00"}
    # The window's end is fixed once, so pages do not shift under us.
    assert len({p["end_date"] for p in params}) == 1


def test_iteration_stops_exactly_at_total_without_an_extra_request(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    search_stub(mocked, 0, 2, page([1, 2], total=4))
    search_stub(mocked, 2, 2, page([3, 4], total=4, offset=2))
    assert [p["id"] for p in mp.iter_payments_updated_since(SINCE, page_size=2)] == [
        1,
        2,
        3,
        4,
    ]
    assert len(mocked.calls) == 2


def test_iteration_stops_at_max_pages_and_warns_where_to_resume(
    mocked: responses.RequestsMock,
    mp: MercadoPagoClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    search_stub(mocked, 0, 2, page([1, 2], total=100))
    search_stub(mocked, 2, 2, page([3, 4], total=100, offset=2))
    search_stub(mocked, 4, 2, page([5, 6], total=100, offset=4))

    with caplog.at_level(logging.WARNING, logger="webhooks_app.services.mercadopago"):
        payments = list(mp.iter_payments_updated_since(SINCE, page_size=2, max_pages=3))

    assert [p["id"] for p in payments] == [1, 2, 3, 4, 5, 6]
    assert len(mocked.calls) == 3
    assert "max_pages=3" in caplog.text
    assert "2026-11-29T11:00:00.000-04:00" in caplog.text


def test_iteration_stops_on_an_empty_page_even_if_total_says_more(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    search_stub(mocked, 0, 2, page([1, 2], total=10))
    search_stub(mocked, 2, 2, page([], total=10, offset=2))
    assert [p["id"] for p in mp.iter_payments_updated_since(SINCE, page_size=2)] == [
        1,
        2,
    ]
    assert len(mocked.calls) == 2


def test_iteration_without_total_stops_on_a_short_page(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    search_stub(mocked, 0, 2, page([1, 2], total=None))
    search_stub(mocked, 2, 2, page([3], total=None, offset=2))
    assert [p["id"] for p in mp.iter_payments_updated_since(SINCE, page_size=2)] == [
        1,
        2,
        3,
    ]


def test_iteration_advances_by_what_was_returned_and_yields_each_id_once(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    # MercadoPago returned fewer than asked (a capped limit), then repeated an item.
    search_stub(mocked, 0, 3, page([1, 2], total=4))
    search_stub(mocked, 2, 3, page([2, 3, 4], total=4, offset=2))
    assert [p["id"] for p in mp.iter_payments_updated_since(SINCE, page_size=3)] == [
        1,
        2,
        3,
        4,
    ]


def test_iteration_propagates_api_errors(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    search_stub(mocked, 0, 2, page([1, 2], total=4))
    mocked.get(
        SEARCH_URL,
        status=503,
        match=[matchers.query_param_matcher({"offset": "2"}, strict_match=False)],
    )
    iterator = mp.iter_payments_updated_since(SINCE, page_size=2)
    assert [next(iterator)["id"], next(iterator)["id"]] == [1, 2]
    with pytest.raises(TransientApiError):
        next(iterator)


# -- error mapping ----------------------------------------------------------


@pytest.mark.parametrize(
    "exception",
    [
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=10)"),
        requests.exceptions.ConnectTimeout("Connection to api.mercadopago.com timed out"),
        requests.exceptions.ConnectionError("Connection refused"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
    ],
)
def test_timeouts_and_connection_errors_are_transient(
    mocked: responses.RequestsMock, mp: MercadoPagoClient, exception: Exception
) -> None:
    mocked.get(PAYMENT_URL, body=exception)
    error = payment_error(mp)
    assert type(error) is TransientApiError
    assert error.retryable is True
    assert error.status_code is None
    assert error.service == "mercadopago"
    assert "GET /v1/payments/1234567890" in str(error)
    assert type(exception).__name__ in str(error)


def test_timeouts_say_they_timed_out(mocked: responses.RequestsMock, mp: MercadoPagoClient) -> None:
    mocked.get(PAYMENT_URL, body=requests.exceptions.ReadTimeout("Read timed out."))
    assert "timed out" in str(payment_error(mp))


def test_other_request_exceptions_are_permanent(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, body=requests.exceptions.InvalidHeader("Invalid header value"))
    error = payment_error(mp)
    assert type(error) is PermanentApiError
    assert error.retryable is False


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_transient(
    mocked: responses.RequestsMock, mp: MercadoPagoClient, status: int
) -> None:
    mocked.get(PAYMENT_URL, status=status, json={"message": "upstream trouble", "error": "x"})
    error = payment_error(mp)
    assert type(error) is TransientApiError
    assert error.retryable is True
    assert error.status_code == status
    assert f"HTTP {status}" in str(error)
    assert "upstream trouble" in str(error)


def test_500_with_an_html_body_keeps_the_body(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, status=502, body="<html>Bad Gateway</html>")
    error = payment_error(mp)
    assert error.response_body == "<html>Bad Gateway</html>"
    assert "HTTP 502 Bad Gateway" in str(error)


def test_429_without_retry_after(mocked: responses.RequestsMock, mp: MercadoPagoClient) -> None:
    mocked.get(PAYMENT_URL, status=429, json={"message": "too many requests"})
    error = payment_error(mp)
    assert type(error) is RateLimitedError
    assert isinstance(error, TransientApiError)
    assert error.retryable is True
    assert error.status_code == 429
    assert error.retry_after is None


def test_429_with_retry_after_in_seconds(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, status=429, headers={"Retry-After": "30"})
    error = payment_error(mp)
    assert type(error) is RateLimitedError
    assert error.retry_after == 30.0
    assert "retry after 30s" in str(error)


def test_429_with_retry_after_as_http_date(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    mocked.get(PAYMENT_URL, status=429, headers={"Retry-After": when})
    error = payment_error(mp)
    assert type(error) is RateLimitedError
    assert error.retry_after is not None
    assert 100 < error.retry_after <= 120


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Thu, 01 Jan 2015 00:00:00 GMT", 0.0), ("soon", None), ("", None), ("nan", None)],
)
def test_retry_after_in_the_past_or_unparsable(
    mocked: responses.RequestsMock,
    mp: MercadoPagoClient,
    header: str,
    expected: float | None,
) -> None:
    mocked.get(PAYMENT_URL, status=429, headers={"Retry-After": header})
    error = payment_error(mp)
    assert type(error) is RateLimitedError
    assert error.retry_after == expected


def test_503_with_retry_after_carries_it(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, status=503, headers={"Retry-After": "5"})
    error = payment_error(mp)
    assert type(error) is TransientApiError
    assert error.retry_after == 5.0


@pytest.mark.parametrize("status", [400, 401, 403, 422])
def test_other_4xx_are_permanent_with_the_api_message(
    mocked: responses.RequestsMock, mp: MercadoPagoClient, status: int
) -> None:
    mocked.get(
        PAYMENT_URL,
        status=status,
        json={
            "message": "invalid payment id",
            "error": "bad_request",
            "status": status,
            "cause": [{"code": 1, "description": "Params Error"}],
        },
        headers={"X-Request-Id": "req-abc-123"},
    )
    error = payment_error(mp)
    assert type(error) is PermanentApiError
    assert error.retryable is False
    assert error.status_code == status
    message = str(error)
    assert message.startswith(f"mercadopago GET /v1/payments/1234567890 failed: HTTP {status}")
    assert "invalid payment id (bad_request)" in message
    assert "Params Error (code 1)" in message
    assert "req-abc-123" in message


def test_401_is_permanent(mocked: responses.RequestsMock, mp: MercadoPagoClient) -> None:
    mocked.get(
        PAYMENT_URL,
        status=401,
        json={
            "message": "invalid access token",
            "error": "unauthorized",
            "status": 401,
        },
    )
    error = payment_error(mp)
    assert type(error) is PermanentApiError
    assert error.status_code == 401
    assert "HTTP 401 Unauthorized: invalid access token (unauthorized)" in str(error)


def test_get_payment_404_is_a_retryable_not_found(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, status=404, json=MP_NOT_FOUND)
    error = payment_error(mp)
    assert type(error) is NotFoundError
    assert error.retryable is True
    assert error.status_code == 404
    assert "HTTP 404 Not Found: Payment not found (not_found) [cause: code 2000]" in str(error)
    assert error.response_body is not None and "not_found" in error.response_body


def test_search_404_is_not_retryable(mocked: responses.RequestsMock, mp: MercadoPagoClient) -> None:
    mocked.get(SEARCH_URL, status=404, json={"message": "not found"})
    with pytest.raises(NotFoundError) as info:
        mp.search_payments(begin_date=SINCE)
    assert info.value.retryable is False


@pytest.mark.parametrize("body", ["<html>OK</html>", "{not json"])
def test_invalid_json_in_a_2xx_is_permanent(
    mocked: responses.RequestsMock, mp: MercadoPagoClient, body: str
) -> None:
    mocked.get(PAYMENT_URL, status=200, body=body, content_type="text/html")
    error = payment_error(mp)
    assert type(error) is PermanentApiError
    assert error.retryable is False
    assert error.status_code == 200
    assert "not valid JSON" in str(error)
    assert error.response_body == body
    assert error.__context__ is None


@pytest.mark.parametrize("body", [b"", b"[1, 2]"])
def test_a_2xx_that_is_not_a_json_object_is_permanent(
    mocked: responses.RequestsMock, mp: MercadoPagoClient, body: bytes
) -> None:
    mocked.get(PAYMENT_URL, status=200, body=body)
    error = payment_error(mp)
    assert type(error) is PermanentApiError
    assert "expected a JSON object" in str(error)


def test_redirects_are_reported_not_followed(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(
        PAYMENT_URL,
        status=301,
        headers={"Location": "https://elsewhere.test/v1/payments/1234567890?x=1"},
    )
    error = payment_error(mp)
    assert type(error) is PermanentApiError
    assert "redirect to https://elsewhere.test/v1/payments/1234567890;" in str(error)
    assert len(mocked.calls) == 1


def test_response_body_is_truncated_to_2_kb(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, status=500, body="é" * 5000)
    error = payment_error(mp)
    assert error.response_body is not None
    assert len(error.response_body.encode("utf-8")) <= 2048
    assert error.response_body.endswith("[truncated]")


def test_errors_survive_pickling(mocked: responses.RequestsMock, mp: MercadoPagoClient) -> None:
    mocked.get(PAYMENT_URL, status=429, headers={"Retry-After": "7"}, json={"message": "slow"})
    error = payment_error(mp)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimitedError
    assert (str(clone), clone.status_code, clone.retry_after, clone.retryable) == (
        str(error),
        429,
        7.0,
        True,
    )
    assert clone.response_body == error.response_body


def test_error_kinds_decide_retryable_unless_told() -> None:
    assert TransientApiError("x", service="mercadopago").retryable is True
    assert RateLimitedError("x", service="mercadopago").retryable is True
    assert PermanentApiError("x", service="mercadopago").retryable is False
    assert NotFoundError("x", service="mercadopago", retryable=True).retryable is True
    with pytest.raises(TypeError, match="retryable"):
        NotFoundError("x", service="mercadopago")


# -- secrets never leak -------------------------------------------------------


def assert_no_secret(error: BaseException, secret: str = TOKEN) -> None:
    rendered = "".join(traceback.format_exception(error))
    for text in (
        str(error),
        repr(error),
        rendered,
        getattr(error, "response_body", None) or "",
    ):
        assert secret not in text
    assert error.__cause__ is None
    assert error.__context__ is None


def test_token_is_redacted_from_api_error_bodies(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(
        PAYMENT_URL,
        status=401,
        json={
            "message": f"invalid access token {TOKEN}",
            "error": "unauthorized",
            "echo": f"Authorization: Bearer {TOKEN}",
        },
    )
    error = payment_error(mp)
    assert_no_secret(error)
    assert "invalid access token ***" in str(error)
    assert error.response_body is not None and "Bearer ***" in error.response_body


def test_token_is_redacted_from_requests_exception_messages(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    # requests/urllib3 exception texts include the URL; one that carried the
    # token (or another credential) must not surface in our error.
    other_secret = "TEST-other-credential-999"
    mocked.get(
        PAYMENT_URL,
        body=requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='api.mercadopago.com', port=443): Max retries exceeded "
            f"with url: /v1/payments/1?access_token={TOKEN} (headers Authorization: Bearer "
            f"{TOKEN}; proxy token={other_secret})"
        ),
    )
    error = payment_error(mp)
    assert type(error) is TransientApiError
    assert_no_secret(error)
    assert_no_secret(error, other_secret)
    assert "access_token=***" in str(error)


def test_token_is_redacted_from_timeouts(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, body=requests.exceptions.ReadTimeout(f"timed out ({TOKEN})"))
    assert_no_secret(payment_error(mp))


def test_token_is_redacted_from_invalid_json_bodies(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(PAYMENT_URL, status=200, body=f"<html>{TOKEN}</html>")
    assert_no_secret(payment_error(mp))


def test_token_is_not_in_the_client_repr_or_session_headers() -> None:
    client = MercadoPagoClient(TOKEN)
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(dict(client.session.headers))


# -- no hidden retries ------------------------------------------------------


def test_created_session_has_retries_disabled(mp: MercadoPagoClient) -> None:
    for prefix in ("https://api.mercadopago.com", "http://127.0.0.1"):
        retries = mp.session.get_adapter(prefix).max_retries
        assert retries.total == 0
        assert retries.read is False
        assert not retries.status_forcelist


def test_a_5xx_is_requested_once(mocked: responses.RequestsMock, mp: MercadoPagoClient) -> None:
    mocked.get(PAYMENT_URL, status=503)
    payment_error(mp)
    assert len(mocked.calls) == 1


@pytest.mark.timeout(20)
def test_a_dropped_connection_is_tried_once_on_a_real_socket() -> None:
    """A server that hangs up on every request sees exactly one connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = 0
    stop = threading.Event()

    def serve() -> None:
        nonlocal accepted
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted += 1
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = MercadoPagoClient(TOKEN, base_url=f"http://127.0.0.1:{port}", timeout=5)
        with pytest.raises(TransientApiError) as info:
            client.get_payment(1)
        stop.set()
        thread.join(timeout=5)
    finally:
        stop.set()
        listener.close()
    assert accepted == 1
    assert_no_secret(info.value)


# -- proxies and CA bundle from the environment ------------------------------

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@contextmanager
def recording_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server answering every request with a payment; yields its URL and
    the request lines it saw (a proxy gets the absolute URL, a server only the path)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.requestline)
            body = json.dumps({"id": 42}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.timeout(20)
def test_an_http_proxy_from_the_environment_is_used(clean_proxy_env: pytest.MonkeyPatch) -> None:
    with recording_server() as (proxy_url, seen):
        clean_proxy_env.setenv("HTTP_PROXY", proxy_url)
        # `.invalid` never resolves: only the proxy can answer.
        client = MercadoPagoClient(TOKEN, base_url="http://mp.invalid", timeout=5)
        assert client.get_payment(42) == {"id": 42}
    assert seen == ["GET http://mp.invalid/v1/payments/42 HTTP/1.1"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("no_proxy", "proxied"), [(None, True), ("127.0.0.1", False), ("localhost,127.0.0.1", False)]
)
def test_no_proxy_from_the_environment_is_honoured(
    clean_proxy_env: pytest.MonkeyPatch, no_proxy: str | None, proxied: bool
) -> None:
    with recording_server() as (url, seen):
        clean_proxy_env.setenv("HTTP_PROXY", url)  # the server is its own proxy
        if no_proxy is not None:
            clean_proxy_env.setenv("NO_PROXY", no_proxy)
        client = MercadoPagoClient(TOKEN, base_url=url, timeout=5)
        assert client.get_payment(42) == {"id": 42}
    target = f"{url}/v1/payments/42" if proxied else "/v1/payments/42"
    assert seen == [f"GET {target} HTTP/1.1"]


@pytest.mark.timeout(20)
def test_the_environment_is_read_when_the_client_is_made(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    with recording_server() as (proxy_url, seen):
        clean_proxy_env.setenv("HTTP_PROXY", proxy_url)
        client = MercadoPagoClient(TOKEN, base_url="http://mp.invalid", timeout=5)
        clean_proxy_env.delenv("HTTP_PROXY")
        client.get_payment(1)
        client.get_payment(2)
    assert [line.split()[1] for line in seen] == [
        "http://mp.invalid/v1/payments/1",
        "http://mp.invalid/v1/payments/2",
    ]


def test_the_ca_bundle_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/private-ca.pem")
    assert MercadoPagoClient(TOKEN).session.verify == "/etc/ssl/private-ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl-ca.pem")
    assert MercadoPagoClient(TOKEN).session.verify == "/etc/ssl/curl-ca.pem"
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert MercadoPagoClient(TOKEN).session.verify is True


# -- construction and config ------------------------------------------------


def test_from_config_reads_token_base_url_and_timeout(
    mocked: responses.RequestsMock,
) -> None:
    client = MercadoPagoClient.from_config(
        {
            "MP_ACCESS_TOKEN": f"  {TOKEN}\n",
            "MP_API_BASE_URL": "http://127.0.0.1:5001/",
            "HTTP_TIMEOUT": "7.5",
        }
    )
    assert client.base_url == "http://127.0.0.1:5001"
    assert client.timeout == (5.0, 7.5)
    mocked.get("http://127.0.0.1:5001/v1/payments/9", json={"id": 9})
    client.get_payment(9)
    assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_from_config_defaults() -> None:
    client = MercadoPagoClient.from_config({"MP_ACCESS_TOKEN": TOKEN, "MP_API_BASE_URL": None})
    assert client.base_url == MercadoPagoClient.DEFAULT_BASE_URL
    assert client.timeout == (5.0, 10.0)


@pytest.mark.parametrize("config", [{}, {"MP_ACCESS_TOKEN": None}, {"MP_ACCESS_TOKEN": "  "}])
def test_from_config_without_a_token_names_the_setting(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="MP_ACCESS_TOKEN"):
        MercadoPagoClient.from_config(config)


@pytest.mark.parametrize("timeout", ["soon", "0", "-1", "inf"])
def test_from_config_with_a_bad_timeout_names_the_setting(timeout: str) -> None:
    with pytest.raises(ValueError, match="HTTP_TIMEOUT"):
        MercadoPagoClient.from_config({"MP_ACCESS_TOKEN": TOKEN, "HTTP_TIMEOUT": timeout})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"access_token": ""},
        {"base_url": "ftp://mp.test"},
        {"base_url": "mp.test"},
        {"timeout": 0},
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"access_token": TOKEN, **kwargs}
    with pytest.raises(ValueError):
        MercadoPagoClient(arguments.pop("access_token"), **arguments)


def test_an_injected_session_is_used_and_not_closed(
    mocked: responses.RequestsMock,
) -> None:
    class TrackingSession(requests.Session):
        closed = False

        def close(self) -> None:
            self.closed = True
            super().close()

    session = TrackingSession()
    mocked.get(PAYMENT_URL, json=PAYMENT)
    with MercadoPagoClient(TOKEN, session=session) as client:
        assert client.session is session
        client.get_payment(1234567890)
    assert session.closed is False
    # The shared session was not modified either.
    assert "Authorization" not in session.headers


def test_the_same_session_is_reused_across_calls(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    session = mp.session
    mocked.get(PAYMENT_URL, json=PAYMENT)
    mp.get_payment(1234567890)
    mp.get_payment(1234567890)
    assert mp.session is session
    assert len(mocked.calls) == 2


def _encoded_copies(token: str) -> dict[str, str]:
    import base64
    from urllib.parse import quote, quote_plus

    return {
        "lower-cased": token.lower(),
        "upper-cased": token.upper(),
        "URL-encoded": quote(token, safe=""),
        "URL-encoded (plus)": quote_plus(token),
        "URL-encoded, lower-case hex": quote(token, safe="").lower(),
        "base64": base64.b64encode(token.encode()).decode(),
        "base64 unpadded": base64.b64encode(token.encode()).decode().rstrip("="),
        "URL-safe base64": base64.urlsafe_b64encode(token.encode()).decode(),
        "base64 of user:token": base64.b64encode(f"user:{token}".encode()).decode(),
        "base64 of u:token": base64.b64encode(f"u:{token}".encode()).decode(),
        "base64 of a lower-cased token": base64.b64encode(token.lower().encode()).decode(),
    }


# A token with characters that URL-encoding changes, as some providers' tokens have.
ODD_TOKEN = "APP_USR-7755331/112926+0c0ffee0c0ffee=424242"


@pytest.mark.parametrize("token", [TOKEN, ODD_TOKEN], ids=["mp-token", "odd-token"])
@pytest.mark.parametrize("form", list(_encoded_copies(TOKEN)))
def test_encoded_copies_of_the_token_are_redacted(
    mocked: responses.RequestsMock, token: str, form: str
) -> None:
    copy = _encoded_copies(token)[form]
    mocked.get(
        PAYMENT_URL,
        status=401,
        json={"message": f"bad credential {copy} given", "echo": f"x-auth: {copy}"},
    )
    error = payment_error(MercadoPagoClient(token))
    for text in (str(error), repr(error), error.response_body or ""):
        assert copy not in text, (form, text)
    assert "bad credential *** given" in str(error)


def test_basic_authorization_is_redacted(mocked: responses.RequestsMock, mp) -> None:
    mocked.get(PAYMENT_URL, status=401, json={"echo": "Authorization: Basic dXNlcjpwYXNzd29yZA=="})
    error = payment_error(mp)
    assert "dXNlcjpwYXNzd29yZA" not in (error.response_body or "")
    assert "Basic ***" in (error.response_body or "")


def test_unrelated_base64_and_words_are_left_alone(mocked: responses.RequestsMock, mp) -> None:
    mocked.get(PAYMENT_URL, status=400, json={"message": "bad cursor aGVsbG8gd29ybGQgaGVsbG8="})
    assert "aGVsbG8gd29ybGQgaGVsbG8=" in str(payment_error(mp))


# -- authorized payments (a subscription's recurring charges) -------------------

AUTHORIZED_PAYMENT_URL = f"{BASE}/authorized_payments/6114264375"
AUTHORIZED_PAYMENT = {
    "id": 6114264375,
    "type": "scheduled",
    "preapproval_id": "2c938084726fca480172750000000000",
    "status": "processed",
    "last_modified": "2026-12-05T10:00:00.000-04:00",
    "payment": {"id": 1234567890, "status": "approved", "status_detail": "accredited"},
}


def test_get_authorized_payment_reads_its_documented_path(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(AUTHORIZED_PAYMENT_URL, json=AUTHORIZED_PAYMENT)
    assert mp.get_authorized_payment(6114264375) == AUTHORIZED_PAYMENT
    assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_get_authorized_payment_quotes_its_id_and_refuses_blank_ones(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    mocked.get(f"{BASE}/authorized_payments/1%2F..%2Fusers%2Fme", json={"id": 1})
    mp.get_authorized_payment("1/../users/me")
    assert mocked.calls[0].request.path_url == "/authorized_payments/1%2F..%2Fusers%2Fme"
    for bad_id in ("", " ", ".."):
        with pytest.raises(ValueError, match="authorized_payment_id"):
            mp.get_authorized_payment(bad_id)


def test_get_authorized_payment_errors_are_typed(
    mocked: responses.RequestsMock, mp: MercadoPagoClient
) -> None:
    not_found = {"message": "not found", "error": "not_found", "status": 404, "cause": []}
    mocked.get(AUTHORIZED_PAYMENT_URL, status=404, json=not_found)
    mocked.get(AUTHORIZED_PAYMENT_URL, status=429, headers={"Retry-After": "2"}, json={})
    mocked.get(AUTHORIZED_PAYMENT_URL, status=503, json={"message": "down"})
    mocked.get(AUTHORIZED_PAYMENT_URL, status=403, json={"message": "forbidden"})
    mocked.get(AUTHORIZED_PAYMENT_URL, json=[AUTHORIZED_PAYMENT])
    expected = [
        (NotFoundError, True),
        (RateLimitedError, True),
        (TransientApiError, True),
        (PermanentApiError, False),
        (PermanentApiError, False),  # a 2xx that is not an object
    ]
    for kind, retryable in expected:
        with pytest.raises(ApiError) as info:
            mp.get_authorized_payment("6114264375")
        assert (type(info.value), info.value.retryable) == (kind, retryable)
    assert mocked.calls[1].response.headers["Retry-After"] == "2"
