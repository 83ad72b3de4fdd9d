"""Unit tests for GoHighLevelClient (HTTP stubbed with `responses`)."""

from __future__ import annotations

import email.utils
import logging
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from webhooks_app.services import (
    ApiError,
    GoHighLevelClient,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
)

TOKEN = "pit-0f1e2d3c-4b5a-6978-8a9b-secretsecret"
LOCATION = "ve9EPM428h8vShlRW1KT"
BASE = "https://services.leadconnectorhq.com"
UPSERT_URL = f"{BASE}/contacts/upsert"
CONTACT_ID = "sx6wyHhbFdRXh302LLNR"
TAGS_URL = f"{BASE}/contacts/{CONTACT_ID}/tags"
CONTACT = {
    "id": CONTACT_ID,
    "locationId": LOCATION,
    "email": "buyer@example.com",
    "firstName": "Ada",
    "tags": ["customer"],
}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Stub HTTP; every registered response must be used by the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def ghl() -> GoHighLevelClient:
    return GoHighLevelClient(TOKEN, LOCATION)


def upsert_error(ghl: GoHighLevelClient) -> ApiError:
    with pytest.raises(ApiError) as info:
        ghl.upsert_contact(email="buyer@example.com")
    return info.value


def assert_ghl_headers(request: requests.PreparedRequest) -> None:
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Version"] == "2021-07-28"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"


# -- upsert_contact ---------------------------------------------------------


def test_upsert_contact_posts_the_contact_and_returns_it(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        UPSERT_URL,
        json={"new": True, "contact": CONTACT, "traceId": "trace-1"},
        match=[
            matchers.json_params_matcher(
                {
                    "locationId": LOCATION,
                    "email": "buyer@example.com",
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "phone": "+5491122334455",
                    "source": "mercadopago",
                }
            )
        ],
    )
    contact = ghl.upsert_contact(
        email="buyer@example.com",
        first_name="Ada",
        last_name="Lovelace",
        phone="+5491122334455",
    )
    assert contact == CONTACT
    request = mocked.calls[0].request
    assert_ghl_headers(request)
    assert request.req_kwargs["timeout"] == (5.0, 10.0)


def test_upsert_contact_leaves_out_blank_fields_so_stored_values_survive(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        UPSERT_URL,
        json={"new": False, "contact": CONTACT},
        match=[
            matchers.json_params_matcher({"locationId": LOCATION, "email": "buyer@example.com"})
        ],
    )
    ghl.upsert_contact(
        email="  buyer@example.com ",
        first_name="",
        last_name="  ",
        phone=None,
        source=None,
    )


@pytest.mark.parametrize("email", ["", "   "])
def test_upsert_contact_requires_an_email(ghl: GoHighLevelClient, email: str) -> None:
    with responses.RequestsMock() as rsps, pytest.raises(ValueError, match="email"):
        ghl.upsert_contact(email=email)
    assert not rsps.calls


@pytest.mark.parametrize(
    "body",
    [{"new": True}, {"contact": {"email": "x@example.com"}}, {"contact": "abc"}, [1]],
)
def test_upsert_response_without_a_contact_id_is_permanent(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient, body: Any
) -> None:
    mocked.post(UPSERT_URL, json=body)
    error = upsert_error(ghl)
    assert type(error) is PermanentApiError
    assert "unexpected response" in str(error)


# -- tags -------------------------------------------------------------------


def test_add_tags_posts_the_tags_and_returns_the_contacts_tags(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        TAGS_URL,
        status=201,
        json={"tags": ["customer", "mp-payment-approved"]},
        match=[matchers.json_params_matcher({"tags": ["mp-payment-approved"]})],
    )
    assert ghl.add_tags(CONTACT_ID, ["mp-payment-approved"]) == [
        "customer",
        "mp-payment-approved",
    ]
    assert_ghl_headers(mocked.calls[0].request)


def test_remove_tags_sends_a_delete_with_a_json_body(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.delete(
        TAGS_URL,
        json={"tags": ["customer"]},
        match=[
            matchers.json_params_matcher({"tags": ["mp-payment-pending", "mp-payment-in-process"]})
        ],
    )
    assert ghl.remove_tags(CONTACT_ID, ["mp-payment-pending", "mp-payment-in-process"]) == [
        "customer"
    ]
    request = mocked.calls[0].request
    assert request.method == "DELETE"
    assert_ghl_headers(request)


def test_tags_are_stripped_and_deduplicated_in_order(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        TAGS_URL,
        json={"tags": ["b", "a"]},
        match=[matchers.json_params_matcher({"tags": ["b", "a"]})],
    )
    ghl.add_tags(CONTACT_ID, [" b", "a", "b ", ""])


def test_a_bare_string_of_tags_is_refused(ghl: GoHighLevelClient) -> None:
    with responses.RequestsMock() as rsps, pytest.raises(TypeError, match="list"):
        ghl.add_tags(CONTACT_ID, "paid")  # type: ignore[arg-type]
    assert not rsps.calls


@pytest.mark.parametrize("tags", [[], ["", "  "]])
def test_an_empty_tag_list_is_refused(ghl: GoHighLevelClient, tags: list[str]) -> None:
    with responses.RequestsMock() as rsps, pytest.raises(ValueError, match="tag"):
        ghl.remove_tags(CONTACT_ID, tags)
    assert not rsps.calls


def test_contact_id_is_quoted_into_one_path_segment(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(f"{BASE}/contacts/..%2Fupsert%3Fx%3D1/tags", json={"tags": ["t"]})
    ghl.add_tags("../upsert?x=1", ["t"])
    assert mocked.calls[0].request.path_url == "/contacts/..%2Fupsert%3Fx%3D1/tags"


@pytest.mark.parametrize("contact_id", ["", " ", ".."])
def test_blank_contact_ids_are_refused(ghl: GoHighLevelClient, contact_id: str) -> None:
    with (
        responses.RequestsMock() as rsps,
        pytest.raises(ValueError, match="contact_id"),
    ):
        ghl.add_tags(contact_id, ["t"])
    assert not rsps.calls


@pytest.mark.parametrize("body", [b"", b'{"succeeded": true}'])
def test_a_tags_response_without_tags_returns_empty_and_warns(
    mocked: responses.RequestsMock,
    ghl: GoHighLevelClient,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    mocked.post(TAGS_URL, status=201, body=body)
    with caplog.at_level(logging.WARNING, logger="webhooks_app.services.gohighlevel"):
        assert ghl.add_tags(CONTACT_ID, ["t"]) == []
    assert "no 'tags' list" in caplog.text


# -- error mapping ----------------------------------------------------------


@pytest.mark.parametrize(
    "exception",
    [
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=10)"),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ConnectionError("Connection refused"),
    ],
)
def test_timeouts_and_connection_errors_are_transient(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient, exception: Exception
) -> None:
    mocked.post(UPSERT_URL, body=exception)
    error = upsert_error(ghl)
    assert type(error) is TransientApiError
    assert error.retryable is True
    assert error.status_code is None
    assert error.service == "gohighlevel"
    assert "gohighlevel POST /contacts/upsert failed" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_5xx_and_408_are_transient(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient, status: int
) -> None:
    mocked.post(UPSERT_URL, status=status, json={"statusCode": status, "message": "try later"})
    error = upsert_error(ghl)
    assert type(error) is TransientApiError
    assert error.retryable is True
    assert error.status_code == status
    assert "try later" in str(error)
    assert len(mocked.calls) == 1


def test_429_without_retry_after(mocked: responses.RequestsMock, ghl: GoHighLevelClient) -> None:
    mocked.post(
        UPSERT_URL,
        status=429,
        json={"statusCode": 429, "message": "Too many requests"},
        headers={"X-RateLimit-Remaining": "0"},
    )
    error = upsert_error(ghl)
    assert type(error) is RateLimitedError
    assert error.retryable is True
    assert error.retry_after is None


# https://marketplace.gohighlevel.com/docs/other/rate-limits: sent on every response.
RATE_HEADERS = {
    "X-RateLimit-Limit-Daily": "200000",
    "X-RateLimit-Daily-Remaining": "199000",
    "X-RateLimit-Interval-Milliseconds": "10000",
    "X-RateLimit-Max": "100",
    "X-RateLimit-Remaining": "0",
}


def test_429_without_retry_after_waits_the_burst_interval(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    """GoHighLevel documents no Retry-After: the interval header is the safe wait."""
    mocked.post(
        UPSERT_URL,
        status=429,
        json={"statusCode": 429, "message": "Too many requests"},
        headers=RATE_HEADERS,
    )
    error = upsert_error(ghl)
    assert type(error) is RateLimitedError
    assert error.retry_after == 10.0
    assert ghl.last_rate_limit is not None and ghl.last_rate_limit.exhausted


def test_last_rate_limit_is_recorded_from_every_response(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    assert ghl.last_rate_limit is None
    mocked.post(
        UPSERT_URL,
        json={"new": True, "contact": CONTACT, "traceId": "t"},
        headers={**RATE_HEADERS, "X-RateLimit-Remaining": "41"},
    )
    mocked.post(TAGS_URL, status=404, json={"statusCode": 404}, headers=RATE_HEADERS)
    mocked.delete(TAGS_URL, json={"tags": []})  # no headers: the last ones are kept

    before = time.time()
    ghl.upsert_contact(email="buyer@example.com")
    first = ghl.last_rate_limit
    with pytest.raises(NotFoundError):
        ghl.add_tags(CONTACT_ID, ["paid"])
    second = ghl.last_rate_limit
    ghl.remove_tags(CONTACT_ID, ["paid"])

    assert first is not None and first.remaining == 41 and not first.exhausted
    assert (first.max, first.interval_ms, first.interval_seconds) == (100, 10000, 10.0)
    assert (first.daily_limit, first.daily_remaining) == (200000, 199000)
    assert before <= first.seen_at <= time.time()
    assert second is not None and second.remaining == 0 and second.exhausted
    assert ghl.last_rate_limit is second


def test_upsert_by_phone_without_email(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        UPSERT_URL,
        json={"new": True, "contact": {"id": CONTACT_ID}, "traceId": "t"},
        match=[
            matchers.json_params_matcher(
                {"locationId": LOCATION, "phone": "+5511999990000", "source": "mercadopago"}
            )
        ],
    )
    assert ghl.upsert_contact(phone="+5511999990000")["id"] == CONTACT_ID
    with pytest.raises(ValueError, match="email or a phone"):
        ghl.upsert_contact(email=" ", phone="")


def test_429_with_retry_after_in_seconds(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(UPSERT_URL, status=429, headers={"Retry-After": "12"})
    error = upsert_error(ghl)
    assert type(error) is RateLimitedError
    assert error.retry_after == 12.0


def test_429_with_retry_after_as_http_date(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    mocked.post(UPSERT_URL, status=429, headers={"Retry-After": when})
    error = upsert_error(ghl)
    assert type(error) is RateLimitedError
    assert error.retry_after is not None
    assert 70 < error.retry_after <= 90


def test_400_is_permanent_with_the_api_message(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        UPSERT_URL,
        status=400,
        json={"statusCode": 400, "message": "Invalid email", "traceId": "tr-77"},
    )
    error = upsert_error(ghl)
    assert type(error) is PermanentApiError
    assert error.retryable is False
    assert error.status_code == 400
    assert str(error) == (
        "gohighlevel POST /contacts/upsert failed: HTTP 400 Bad Request: Invalid email"
        " [trace id tr-77]"
    )


def test_422_with_a_list_of_messages_is_permanent(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        TAGS_URL,
        status=422,
        json={
            "statusCode": 422,
            "message": ["tags must be an array", "tags should not be empty"],
            "error": "Unprocessable Entity",
        },
    )
    with pytest.raises(PermanentApiError) as info:
        ghl.add_tags(CONTACT_ID, ["t"])
    assert info.value.status_code == 422
    assert "tags must be an array; tags should not be empty (Unprocessable Entity)" in str(
        info.value
    )


def test_401_is_permanent(mocked: responses.RequestsMock, ghl: GoHighLevelClient) -> None:
    mocked.post(
        UPSERT_URL,
        status=401,
        json={
            "statusCode": 401,
            "message": "Invalid token: access token is invalid",
            "error": "Unauthorized",
        },
    )
    error = upsert_error(ghl)
    assert type(error) is PermanentApiError
    assert error.status_code == 401
    assert "Invalid token: access token is invalid (Unauthorized)" in str(error)


def test_404_is_a_not_found_that_is_not_retryable(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.delete(TAGS_URL, status=404, json={"statusCode": 404, "message": "Contact not found"})
    with pytest.raises(NotFoundError) as info:
        ghl.remove_tags(CONTACT_ID, ["t"])
    assert info.value.retryable is False
    assert info.value.status_code == 404
    assert f"DELETE /contacts/{CONTACT_ID}/tags" in str(info.value)
    assert "Contact not found" in str(info.value)


def test_invalid_json_in_a_2xx_is_permanent(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(TAGS_URL, status=201, body="<html>created</html>", content_type="text/html")
    with pytest.raises(PermanentApiError) as info:
        ghl.add_tags(CONTACT_ID, ["t"])
    assert info.value.status_code == 201
    assert info.value.retryable is False
    assert "not valid JSON (text/html)" in str(info.value)
    assert info.value.response_body == "<html>created</html>"


# -- secrets never leak -------------------------------------------------------


def assert_no_secret(error: BaseException) -> None:
    rendered = "".join(traceback.format_exception(error))
    for text in (
        str(error),
        repr(error),
        rendered,
        getattr(error, "response_body", None) or "",
    ):
        assert TOKEN not in text
    assert error.__cause__ is None
    assert error.__context__ is None


def test_token_is_redacted_from_api_error_bodies(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        UPSERT_URL,
        status=401,
        json={
            "statusCode": 401,
            "message": f"Invalid token: {TOKEN}",
            "error": "Unauthorized",
        },
    )
    error = upsert_error(ghl)
    assert_no_secret(error)
    assert "Invalid token: ***" in str(error)


def test_token_is_redacted_from_requests_exception_messages(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(
        UPSERT_URL,
        body=requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='services.leadconnectorhq.com', port=443): Max retries "
            f"exceeded with url: /contacts/upsert?token={TOKEN} "
            f"(request headers: {{'Authorization': 'Bearer {TOKEN}'}})"
        ),
    )
    error = upsert_error(ghl)
    assert type(error) is TransientApiError
    assert_no_secret(error)


def test_token_is_redacted_from_timeouts(
    mocked: responses.RequestsMock, ghl: GoHighLevelClient
) -> None:
    mocked.post(TAGS_URL, body=requests.exceptions.ReadTimeout(f"Bearer {TOKEN} timed out"))
    with pytest.raises(TransientApiError) as info:
        ghl.add_tags(CONTACT_ID, ["t"])
    assert_no_secret(info.value)


def test_a_short_placeholder_token_does_not_shred_messages(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(TAGS_URL, status=404, json={"statusCode": 404, "message": "Contact not found"})
    with pytest.raises(NotFoundError) as info:
        GoHighLevelClient("t", LOCATION).add_tags(CONTACT_ID, ["x"])
    assert str(info.value).endswith(
        f"/contacts/{CONTACT_ID}/tags failed: HTTP 404 Not Found: Contact not found"
    )


def test_token_is_not_in_the_client_repr(ghl: GoHighLevelClient) -> None:
    assert TOKEN not in repr(ghl)
    assert LOCATION in repr(ghl)


def test_created_session_has_retries_disabled(ghl: GoHighLevelClient) -> None:
    retries = ghl.session.get_adapter(BASE).max_retries
    assert retries.total == 0
    assert retries.read is False


# -- construction and config ------------------------------------------------


@pytest.mark.parametrize("base_url", ["https://ghl.test", "https://ghl.test/"])
def test_base_url_with_or_without_trailing_slash(
    mocked: responses.RequestsMock, base_url: str
) -> None:
    mocked.post("https://ghl.test/contacts/upsert", json={"contact": CONTACT})
    client = GoHighLevelClient(TOKEN, LOCATION, base_url=base_url)
    assert client.upsert_contact(email="buyer@example.com")["id"] == CONTACT_ID


def test_from_config_reads_every_setting(mocked: responses.RequestsMock) -> None:
    client = GoHighLevelClient.from_config(
        {
            "GHL_API_TOKEN": f"{TOKEN}\n",
            "GHL_LOCATION_ID": LOCATION,
            "GHL_API_BASE_URL": "http://127.0.0.1:5001/",
            "HTTP_TIMEOUT": 3,
        }
    )
    assert client.location_id == LOCATION
    assert client.base_url == "http://127.0.0.1:5001"
    assert client.timeout == (3.0, 3.0)
    mocked.post(
        "http://127.0.0.1:5001/contacts/upsert",
        json={"contact": CONTACT},
        match=[matchers.json_params_matcher({"locationId": LOCATION}, strict_match=False)],
    )
    client.upsert_contact(email="buyer@example.com")
    assert_ghl_headers(mocked.calls[0].request)


def test_from_config_defaults() -> None:
    client = GoHighLevelClient.from_config({"GHL_API_TOKEN": TOKEN, "GHL_LOCATION_ID": LOCATION})
    assert client.base_url == GoHighLevelClient.DEFAULT_BASE_URL
    assert client.timeout == (5.0, 10.0)


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({"GHL_LOCATION_ID": LOCATION}, "GHL_API_TOKEN"),
        ({"GHL_API_TOKEN": "", "GHL_LOCATION_ID": LOCATION}, "GHL_API_TOKEN"),
        ({"GHL_API_TOKEN": TOKEN}, "GHL_LOCATION_ID"),
        ({"GHL_API_TOKEN": TOKEN, "GHL_LOCATION_ID": " "}, "GHL_LOCATION_ID"),
    ],
)
def test_from_config_names_the_missing_setting(config: dict[str, Any], missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        GoHighLevelClient.from_config(config)


def test_from_config_with_a_bad_timeout_names_the_setting() -> None:
    with pytest.raises(ValueError, match="HTTP_TIMEOUT"):
        GoHighLevelClient.from_config(
            {"GHL_API_TOKEN": TOKEN, "GHL_LOCATION_ID": LOCATION, "HTTP_TIMEOUT": "ten"}
        )


@pytest.mark.parametrize("args", [("", LOCATION), (TOKEN, ""), (TOKEN, "  ")])
def test_constructor_requires_token_and_location(args: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        GoHighLevelClient(*args)
