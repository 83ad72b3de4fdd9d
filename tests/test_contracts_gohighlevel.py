"""The GoHighLevel client and the sandbox, both checked against GoHighLevel's OpenAPI document.

The real client talks to the real sandbox over HTTP; every request it makes and
every answer it gets is captured (a `requests` response hook on the client's
session) and validated with openapi-core against the vendored
tests/contracts/gohighlevel-contacts.json (source and known mistakes: README.md there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from webhooks_app.sandbox import SandboxServer
from webhooks_app.services import (
    GoHighLevelClient,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
)

CONTRACT = Path(__file__).parent / "contracts" / "gohighlevel-contacts.json"
LOCATION = "ve9EPM428h8vShlRW1KT"
TOKEN = "pit-contract-test-token"
# GoHighLevel documents these on every response, not in the OpenAPI document
# (https://marketplace.gohighlevel.com/docs/other/rate-limits).
RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit-Daily",
    "X-RateLimit-Daily-Remaining",
    "X-RateLimit-Interval-Milliseconds",
    "X-RateLimit-Max",
    "X-RateLimit-Remaining",
)
# Answers the real API gives that the document does not list for these operations
# (see README.md): their bodies are checked against GHL's error shape instead.
UNDOCUMENTED = {404, 429}

pytestmark = pytest.mark.timeout(60)


def openapi_for(base_url: str) -> OpenAPI:
    """The vendored document, served from the sandbox instead of services.leadconnectorhq.com."""
    spec = json.loads(CONTRACT.read_text(encoding="utf-8"))
    spec["servers"] = [{"url": base_url}]
    # The document itself does not validate as OpenAPI 3.0 (its http security scheme
    # has `name` and `in`; README.md): load it as published, without that check.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


@pytest.fixture
def exchanges(sandbox: SandboxServer) -> Iterator[list[requests.Response]]:
    """The client's responses (each with its `.request`), in order."""
    captured: list[requests.Response] = []
    sandbox.state.ghl_token = TOKEN
    yield captured
    sandbox.state.ghl_token = None


def client_for(sandbox: SandboxServer, captured: list, token: str = TOKEN) -> GoHighLevelClient:
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: captured.append(response))
    return GoHighLevelClient(token, LOCATION, base_url=sandbox.url, session=session)


def check(openapi: OpenAPI, response: requests.Response) -> dict[str, Any]:
    """Validate one exchange; return what was checked, for the assertions."""
    request = RequestsOpenAPIRequest(response.request)
    openapi.validate_request(request)
    # A refused token names no app, and GHL counts per app and location: no headers then.
    for name in RATE_LIMIT_HEADERS if response.status_code != 401 else ():
        assert name in response.headers, f"{name} missing on {response.status_code}"
    assert "Retry-After" not in response.headers  # GoHighLevel documents none
    if response.status_code in UNDOCUMENTED:
        body = response.json()
        assert body["statusCode"] == response.status_code and isinstance(body["message"], str)
    else:
        openapi.validate_response(request, RequestsOpenAPIResponse(response))
    return {"method": response.request.method, "status": response.status_code}


def test_every_exchange_matches_the_openapi_document(
    sandbox: SandboxServer, exchanges: list[requests.Response]
) -> None:
    openapi = openapi_for(sandbox.url)
    ghl = client_for(sandbox, exchanges)

    contact = ghl.upsert_contact(email="buyer@example.com", first_name="Ada", phone="+5511999")
    again = ghl.upsert_contact(
        email="buyer@example.com",
        last_name="Lovelace",
        # GHL_CUSTOM_FIELDS by field id (the document's TextField requires `id`).
        custom_fields=[{"id": "Ab12Cd34Ef56Gh78Ij90", "field_value": "order-77"}],
    )
    ghl.add_tags(contact["id"], ["mp-payment-approved", "vip"])
    ghl.remove_tags(contact["id"], ["vip"])
    with pytest.raises(NotFoundError):
        ghl.add_tags("unknownContact00000", ["x"])
    with pytest.raises(PermanentApiError) as unauthorized:
        client_for(sandbox, exchanges, token="wrong-token").upsert_contact(email="a@example.com")
    with pytest.raises(PermanentApiError) as unprocessable:
        ghl.upsert_contact(email="not-an-email")
    sandbox.state.set_rate_limit(1, 60.0)
    ghl.upsert_contact(email="buyer@example.com")
    with pytest.raises(RateLimitedError) as limited:
        ghl.upsert_contact(email="buyer@example.com")

    checked = [check(openapi, response) for response in exchanges]

    assert [c["status"] for c in checked] == [200, 200, 201, 200, 404, 401, 422, 200, 429]
    assert again["id"] == contact["id"]
    assert again["customFields"] == [{"id": "Ab12Cd34Ef56Gh78Ij90", "value": "order-77"}]
    assert [r.json()["new"] for r in exchanges[:2]] == [True, False]
    assert unauthorized.value.status_code == 401 and unprocessable.value.status_code == 422
    assert limited.value.retry_after == 60.0  # the interval: no Retry-After to go by
    assert ghl.last_rate_limit is not None and ghl.last_rate_limit.exhausted


@pytest.mark.parametrize(
    "answer_body",
    [
        {"new": "yes", "contact": {"id": "x"}},
        {"new": True, "contact": {"id": "x", "phone": None}},  # null, not omitted
    ],
)
def test_the_document_catches_a_shape_it_does_not_allow(
    sandbox: SandboxServer, answer_body: dict
) -> None:
    """The check has teeth: a wrongly typed field in a request or an answer is reported."""
    from openapi_core.validation.request.exceptions import RequestValidationError
    from openapi_core.validation.response.exceptions import ResponseValidationError

    openapi = openapi_for(sandbox.url)
    url = f"{sandbox.url}/contacts/upsert"
    bad_request = requests.Request(
        "POST", url, json={"locationId": LOCATION, "tags": "paid"}, headers={"Version": "x"}
    )
    with pytest.raises(RequestValidationError):
        openapi.validate_request(RequestsOpenAPIRequest(bad_request))

    good_request = requests.Request(
        "POST",
        url,
        json={"locationId": LOCATION, "email": "a@example.com"},
        headers={"Version": "2021-07-28", "Authorization": "Bearer t"},
    )
    answer = requests.Response()
    answer.status_code = 200
    answer.headers["Content-Type"] = "application/json"
    answer._content = json.dumps(answer_body).encode()
    with pytest.raises(ResponseValidationError):
        openapi.validate_response(
            RequestsOpenAPIRequest(good_request), RequestsOpenAPIResponse(answer)
        )
