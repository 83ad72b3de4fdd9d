"""Tests for the MercadoPago / GoHighLevel sandbox, over real HTTP."""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from webhooks_app.sandbox import (
    GOHIGHLEVEL,
    MERCADOPAGO,
    SandboxServer,
    SandboxState,
    create_sandbox_app,
)

pytestmark = pytest.mark.timeout(30)

MP_AUTH = {"Authorization": "Bearer test-mp-token"}
GHL_HEADERS = {"Authorization": "Bearer test-ghl-token", "Version": "2021-07-28"}
LOCATION = "loc-1"
# https://marketplace.gohighlevel.com/docs/other/rate-limits: on every response.
RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit-Daily",
    "X-RateLimit-Daily-Remaining",
    "X-RateLimit-Interval-Milliseconds",
    "X-RateLimit-Max",
    "X-RateLimit-Remaining",
)
MP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-04:00$")
TIMEOUT = 5


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A fresh sandbox on a free loopback port."""
    with SandboxServer() as server:
        yield server


def get_payment(sandbox: SandboxServer, payment_id: int | str, **kwargs) -> requests.Response:
    kwargs.setdefault("headers", MP_AUTH)
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.get(f"{sandbox.url}/v1/payments/{payment_id}", **kwargs)


def search(sandbox: SandboxServer, **params) -> requests.Response:
    return requests.get(
        f"{sandbox.url}/v1/payments/search",
        params=params,
        headers=MP_AUTH,
        timeout=TIMEOUT,
    )


def upsert(sandbox: SandboxServer, email: str, **fields) -> requests.Response:
    body = {"locationId": LOCATION, "email": email, "firstName": "Ana", **fields}
    return requests.post(
        f"{sandbox.url}/contacts/upsert",
        json=body,
        headers=GHL_HEADERS,
        timeout=TIMEOUT,
    )


def tags(sandbox: SandboxServer, method: str, contact_id: str, values: list) -> requests.Response:
    return requests.request(
        method,
        f"{sandbox.url}/contacts/{contact_id}/tags",
        json={"tags": values},
        headers=GHL_HEADERS,
        timeout=TIMEOUT,
    )


# -- MercadoPago -----------------------------------------------------------------------


def test_payment_found_with_mp_shape(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment(transaction_amount=59.9, status="pending")

    response = get_payment(sandbox, payment["id"])

    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["id"], int) and body["id"] == payment["id"]
    assert body["status"] == "pending"
    assert body["status_detail"] == "pending_waiting_payment"
    assert body["transaction_amount"] == 59.9
    assert body["currency_id"] == "BRL"
    assert body["live_mode"] is False
    assert body["payer"]["email"] == f"buyer{payment['id']}@example.com"
    assert body["payer"]["first_name"] == "Test"
    assert body["external_reference"]
    assert MP_TIME.match(body["date_created"])
    assert MP_TIME.match(body["date_last_updated"])
    assert body["date_approved"] is None


def test_payment_defaults_and_explicit_id() -> None:
    state = SandboxState()
    payment = state.add_payment(id="123", payer={"email": "x@example.com"})

    assert payment["id"] == 123
    assert payment["status"] == "approved"
    assert payment["status_detail"] == "accredited"
    assert payment["transaction_amount"] == 100.0
    assert payment["date_approved"] == payment["date_created"]
    # A partial payer keeps the generated name.
    assert payment["payer"]["email"] == "x@example.com"
    assert payment["payer"]["last_name"] == "Buyer"
    # Generated ids never collide with explicit ones.
    assert state.add_payment()["id"] > 123
    with pytest.raises(ValueError):
        state.add_payment(id="abc")


def test_payment_update_bumps_date_last_updated() -> None:
    state = SandboxState()
    created = state.add_payment(status="pending")

    updated = state.add_payment(id=created["id"], status="approved")

    assert updated["date_created"] == created["date_created"]
    assert updated["date_last_updated"] > created["date_last_updated"]
    assert updated["status_detail"] == "accredited"
    assert updated["date_approved"] == updated["date_last_updated"]
    assert len(state.payments()) == 1


def test_payment_not_found(sandbox: SandboxServer) -> None:
    response = get_payment(sandbox, 999)

    assert response.status_code == 404
    assert response.json() == {
        "message": "Payment not found",
        "error": "not_found",
        "status": 404,
        "cause": [{"code": 2000, "description": "Payment not found", "data": None}],
    }


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "x"}])
def test_payment_requires_bearer_token(sandbox: SandboxServer, headers: dict) -> None:
    payment = sandbox.state.add_payment()

    response = get_payment(sandbox, payment["id"], headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "message": "invalid access token",
        "error": "unauthorized",
        "status": 401,
        "cause": [],
    }


def test_configured_access_token_is_enforced() -> None:
    with SandboxServer(SandboxState(access_token="right")) as server:
        payment = server.state.add_payment()
        wrong = get_payment(server, payment["id"], headers={"Authorization": "Bearer wrong"})
        right = get_payment(server, payment["id"], headers={"Authorization": "Bearer right"})

    assert wrong.status_code == 401
    assert right.status_code == 200


def test_search_sorts_and_pages(sandbox: SandboxServer) -> None:
    ids = [sandbox.state.add_payment()["id"] for _ in range(5)]
    # Touch the first one: it becomes the most recently updated.
    sandbox.state.add_payment(id=ids[0], status="refunded")

    asc = search(sandbox, sort="date_last_updated", criteria="asc", limit=2, offset=0).json()
    page2 = search(sandbox, sort="date_last_updated", criteria="asc", limit=2, offset=2).json()
    page3 = search(sandbox, sort="date_last_updated", criteria="asc", limit=2, offset=4).json()
    desc = search(sandbox, sort="date_last_updated", criteria="desc").json()

    assert asc["paging"] == {"total": 5, "limit": 2, "offset": 0}
    paged = [p["id"] for page in (asc, page2, page3) for p in page["results"]]
    assert paged == ids[1:] + ids[:1]
    assert [p["id"] for p in desc["results"]] == list(reversed(paged))
    assert desc["paging"]["limit"] == 30


def test_search_date_range_and_filters(sandbox: SandboxServer) -> None:
    now = datetime.now(UTC)
    old = sandbox.state.add_payment(date_last_updated=now - timedelta(days=3))
    recent = sandbox.state.add_payment(status="rejected")

    iso = search(
        sandbox,
        range="date_last_updated",
        begin_date=(now - timedelta(days=1)).isoformat(),
        end_date=(now + timedelta(minutes=1)).isoformat(),
    ).json()
    relative = search(sandbox, range="date_last_updated", begin_date="NOW-2DAYS", end_date="NOW")
    everything = search(sandbox, range="date_last_updated", begin_date="NOW-7DAYS").json()
    rejected = search(sandbox, status="rejected").json()

    assert [p["id"] for p in iso["results"]] == [recent["id"]]
    assert [p["id"] for p in relative.json()["results"]] == [recent["id"]]
    assert {p["id"] for p in everything["results"]} == {old["id"], recent["id"]}
    assert [p["id"] for p in rejected["results"]] == [recent["id"]]


def test_search_rejects_bad_parameters(sandbox: SandboxServer) -> None:
    assert search(sandbox, criteria="sideways").status_code == 400
    assert search(sandbox, limit="many").status_code == 400
    assert search(sandbox, begin_date="yesterday-ish").status_code == 400
    assert search(sandbox, limit=5000).json()["paging"]["limit"] == 1000


# -- fault injection -------------------------------------------------------------------


def test_fault_fails_n_times_then_succeeds(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    other = sandbox.state.add_payment()
    sandbox.state.set_fault(MERCADOPAGO, str(payment["id"]), status=500, times=2)

    first, second = (
        get_payment(sandbox, payment["id"]),
        get_payment(sandbox, payment["id"]),
    )
    untouched = get_payment(sandbox, other["id"])
    third = get_payment(sandbox, payment["id"])

    assert [first.status_code, second.status_code, third.status_code] == [500, 500, 200]
    assert first.json() == {
        "message": "internal_error",
        "error": "internal_error",
        "status": 500,
        "cause": [],
    }
    assert untouched.status_code == 200
    outcomes = [c["outcome"] for c in sandbox.state.calls(path_contains=str(payment["id"]))]
    assert outcomes == ["fault", "fault", "ok"]


def test_fault_with_delay_only(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    sandbox.state.set_fault(MERCADOPAGO, payment["id"], status=0, delay=0.3)

    started = time.monotonic()
    delayed = get_payment(sandbox, payment["id"])
    delayed_for = time.monotonic() - started
    fast = get_payment(sandbox, payment["id"])

    assert delayed.status_code == 200 and delayed.json()["id"] == payment["id"]
    assert delayed_for >= 0.3
    assert fast.status_code == 200
    calls = sandbox.state.calls()
    assert [c["outcome"] for c in calls] == ["delayed", "ok"]
    # Server-side durations: the delay applied once, to the first call only.
    assert calls[0]["duration"] >= 0.3
    assert calls[1]["duration"] < 0.2


def test_fault_delay_then_error_makes_client_time_out(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    sandbox.state.set_fault(MERCADOPAGO, payment["id"], status=504, delay=0.4)

    with pytest.raises(requests.Timeout):
        get_payment(sandbox, payment["id"], timeout=0.1)


def test_fault_429_sends_retry_after_for_mercadopago_only(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    sandbox.state.set_fault(MERCADOPAGO, payment["id"], status=429, retry_after=2)
    sandbox.state.set_fault(GOHIGHLEVEL, "*", status=429)

    mp = get_payment(sandbox, payment["id"])
    ghl = upsert(sandbox, "a@example.com")

    assert mp.status_code == 429
    assert mp.headers["Retry-After"] == "2"
    assert mp.json()["status"] == 429
    assert ghl.status_code == 429
    assert "Retry-After" not in ghl.headers  # GoHighLevel documents none
    assert ghl.json() == {"statusCode": 429, "message": "Too Many Requests"}


def test_wildcard_fault_forever_until_removed(sandbox: SandboxServer) -> None:
    ids = [sandbox.state.add_payment()["id"] for _ in range(3)]
    sandbox.state.set_fault(MERCADOPAGO, "*", status=503, times=-1)

    statuses = [get_payment(sandbox, pid).status_code for pid in ids * 2]
    sandbox.state.set_fault(MERCADOPAGO, "*", times=0)

    assert statuses == [503] * 6
    assert get_payment(sandbox, ids[0]).status_code == 200
    assert sandbox.state.faults() == []


def test_specific_fault_wins_over_wildcard(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    sandbox.state.set_fault(MERCADOPAGO, "*", status=503, times=-1)
    sandbox.state.set_fault(MERCADOPAGO, payment["id"], status=502, times=1)

    assert get_payment(sandbox, payment["id"]).status_code == 502
    assert get_payment(sandbox, payment["id"]).status_code == 503


def test_random_failures_are_deterministic_by_seed(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()

    def pattern(seed: int) -> list[int]:
        sandbox.state.set_random_failures(MERCADOPAGO, rate=0.5, seed=seed, status=502)
        return [get_payment(sandbox, payment["id"]).status_code for _ in range(20)]

    first, again, other = pattern(7), pattern(7), pattern(8)

    expected_rng = random.Random(7)
    assert first == [502 if expected_rng.random() < 0.5 else 200 for _ in range(20)]
    assert first == again
    assert first != other
    assert 0 < first.count(502) < 20
    sandbox.state.set_random_failures(MERCADOPAGO, rate=0, seed=0)
    assert get_payment(sandbox, payment["id"]).status_code == 200


def test_latency_is_added(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    sandbox.state.set_latency(MERCADOPAGO, 0.15, 0.2)

    started = time.monotonic()
    response = get_payment(sandbox, payment["id"])
    elapsed = time.monotonic() - started
    sandbox.state.set_latency(MERCADOPAGO, 0, 0)
    get_payment(sandbox, payment["id"])

    assert response.status_code == 200
    assert elapsed >= 0.15
    durations = [c["duration"] for c in sandbox.state.calls()]
    assert durations[0] >= 0.15
    assert durations[1] < 0.1


def test_delay_blocks_only_its_own_call(sandbox: SandboxServer) -> None:
    slow = sandbox.state.add_payment()
    fast = sandbox.state.add_payment()
    sandbox.state.set_fault(MERCADOPAGO, slow["id"], status=0, delay=0.45)
    results: dict[str, float] = {}

    def fetch(name: str, payment_id: int) -> None:
        started = time.monotonic()
        get_payment(sandbox, payment_id)
        results[name] = time.monotonic() - started

    slow_thread = threading.Thread(target=fetch, args=("slow", slow["id"]))
    slow_thread.start()
    time.sleep(0.05)
    fetch("fast", fast["id"])
    slow_still_waiting = slow_thread.is_alive()
    slow_thread.join()

    assert slow_still_waiting
    assert results["slow"] >= 0.45
    assert results["fast"] < results["slow"]


# -- GoHighLevel -----------------------------------------------------------------------


def test_upsert_is_idempotent_by_email(sandbox: SandboxServer) -> None:
    first = upsert(sandbox, "Ana@Example.com", lastName="Silva", phone="+5511999999999")
    second = upsert(sandbox, "ana@example.com", firstName="Ana Maria")
    elsewhere = requests.post(
        f"{sandbox.url}/contacts/upsert",
        json={"locationId": "loc-2", "email": "ana@example.com"},
        headers=GHL_HEADERS,
        timeout=TIMEOUT,
    )

    # 200 for a new contact too (UpsertContactsSuccessfulResponseDto is the 200 answer).
    assert first.status_code == 200 and first.json()["new"] is True
    assert second.status_code == 200 and second.json()["new"] is False
    contact = second.json()["contact"]
    assert contact["id"] == first.json()["contact"]["id"]
    assert contact["firstName"] == "Ana Maria"
    assert contact["lastName"] == "Silva"  # kept: not in the second body
    assert contact["locationId"] == LOCATION
    assert first.json()["traceId"]
    assert elsewhere.json()["new"] is True  # one contact per (location, e-mail)
    assert len(sandbox.state.contacts()) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"locationId": LOCATION},  # real GHL needs an e-mail or a phone to match by
        {"locationId": LOCATION, "email": "not-an-email"},
        {"locationId": LOCATION, "phone": "no digits"},
        {"email": "ok@example.com"},
        {"locationId": LOCATION, "email": "ok@example.com", "tags": "paid"},
    ],
)
def test_upsert_validates_body(sandbox: SandboxServer, body: dict) -> None:
    response = requests.post(
        f"{sandbox.url}/contacts/upsert",
        json=body,
        headers=GHL_HEADERS,
        timeout=TIMEOUT,
    )

    assert response.status_code == 422
    assert response.json()["statusCode"] == 422
    assert isinstance(response.json()["message"], list) and response.json()["message"]
    assert sandbox.state.contacts() == []


def test_get_contact_and_404(sandbox: SandboxServer) -> None:
    contact_id = upsert(sandbox, "b@example.com").json()["contact"]["id"]

    found = requests.get(f"{sandbox.url}/contacts/{contact_id}", headers=GHL_HEADERS, timeout=5)
    missing = requests.get(f"{sandbox.url}/contacts/nope", headers=GHL_HEADERS, timeout=5)

    assert found.status_code == 200
    assert found.json()["contact"]["email"] == "b@example.com"
    assert set(found.json()) == {"contact"}
    assert missing.status_code == 404
    assert missing.json() == {"statusCode": 404, "message": "Contact not found"}


def test_tags_add_and_remove_are_idempotent(sandbox: SandboxServer) -> None:
    contact_id = upsert(sandbox, "c@example.com").json()["contact"]["id"]

    added = tags(sandbox, "POST", contact_id, ["mp-payment-approved", "vip"])
    again = tags(sandbox, "POST", contact_id, ["mp-payment-approved"])
    removed = tags(sandbox, "DELETE", contact_id, ["vip", "never-there"])
    removed_again = tags(sandbox, "DELETE", contact_id, ["vip"])
    unknown = tags(sandbox, "POST", "nope", ["x"])
    invalid = tags(sandbox, "POST", contact_id, "not-a-list")

    assert added.status_code == 201 and added.json()["tags"] == [
        "mp-payment-approved",
        "vip",
    ]
    assert again.json() == {"tags": ["mp-payment-approved", "vip"]}  # the documented body
    assert removed.status_code == 200 and removed.json() == {"tags": ["mp-payment-approved"]}
    assert removed_again.json()["tags"] == ["mp-payment-approved"]
    assert unknown.status_code == 404
    assert invalid.status_code == 422
    assert sandbox.state.find_contact("C@example.com")["tags"] == ["mp-payment-approved"]


def test_upsert_tags_replace_existing_tags(sandbox: SandboxServer) -> None:
    contact_id = upsert(sandbox, "d@example.com").json()["contact"]["id"]
    tags(sandbox, "POST", contact_id, ["old"])

    response = upsert(sandbox, "d@example.com", tags=["New", "new"])

    assert response.json()["contact"]["tags"] == ["new"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Version": "2021-07-28"}, 401),
        ({"Authorization": "Bearer t"}, 400),
        ({"Authorization": "Bearer t", "Version": "1999-01-01"}, 400),
    ],
)
def test_ghl_requires_token_and_version(sandbox: SandboxServer, headers: dict, status: int) -> None:
    response = requests.post(
        f"{sandbox.url}/contacts/upsert",
        json={"locationId": LOCATION, "email": "e@example.com"},
        headers=headers,
        timeout=TIMEOUT,
    )

    assert response.status_code == status
    assert response.json()["statusCode"] == status
    if status == 401:
        assert response.json()["message"] == "Invalid JWT"
    assert sandbox.state.contacts() == []


def test_ghl_fault_by_email_hits_upsert_and_tags(sandbox: SandboxServer) -> None:
    contact_id = upsert(sandbox, "f@example.com").json()["contact"]["id"]
    sandbox.state.set_fault(GOHIGHLEVEL, "F@Example.com", status=502, times=2)

    faulted_upsert = upsert(sandbox, "f@example.com")
    other = upsert(sandbox, "g@example.com")
    faulted_tags = tags(sandbox, "POST", contact_id, ["x"])
    recovered = tags(sandbox, "POST", contact_id, ["x"])

    assert faulted_upsert.status_code == 502
    assert faulted_upsert.json() == {"statusCode": 502, "message": "Bad Gateway"}
    assert other.status_code == 200
    assert faulted_tags.status_code == 502
    assert recovered.status_code == 201


def test_rate_limit_answers_429_with_ghl_headers_and_no_retry_after(
    sandbox: SandboxServer,
) -> None:
    sandbox.state.set_rate_limit(5, 1.0)

    answers = [upsert(sandbox, f"r{i}@example.com") for i in range(5)]
    limited = upsert(sandbox, "r5@example.com")
    other_location = requests.post(
        f"{sandbox.url}/contacts/upsert",
        json={"locationId": "loc-2", "email": "z@example.com"},
        headers=GHL_HEADERS,
        timeout=TIMEOUT,
    )
    time.sleep(int(limited.headers["X-RateLimit-Interval-Milliseconds"]) / 1000)
    after_wait = upsert(sandbox, "r5@example.com")

    assert [a.status_code for a in answers] == [200] * 5
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    assert limited.status_code == 429
    assert limited.json() == {"statusCode": 429, "message": "Too Many Requests"}
    assert "Retry-After" not in limited.headers  # GoHighLevel documents none
    assert {name: limited.headers[name] for name in RATE_LIMIT_HEADERS} == {
        "X-RateLimit-Limit-Daily": "200000",
        "X-RateLimit-Daily-Remaining": "199995",
        "X-RateLimit-Interval-Milliseconds": "1000",
        "X-RateLimit-Max": "5",
        "X-RateLimit-Remaining": "0",
    }
    assert other_location.status_code == 200
    assert other_location.headers["X-RateLimit-Remaining"] == "4"  # per location
    assert after_wait.status_code == 200
    assert [c["outcome"] for c in sandbox.state.calls(path_contains="upsert")][5] == "rate_limited"
    assert sandbox.state.find_contact("r5@example.com", LOCATION) is not None
    # MercadoPago is not rate-limited by the GHL limit.
    payment = sandbox.state.add_payment()
    assert all(get_payment(sandbox, payment["id"]).status_code == 200 for _ in range(7))


def test_daily_rate_limit(sandbox: SandboxServer) -> None:
    sandbox.state.set_rate_limit(100, 10.0, daily=2)

    answers = [upsert(sandbox, f"d{i}@example.com") for i in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Daily-Remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].headers["X-RateLimit-Limit-Daily"] == "2"


def test_every_ghl_answer_carries_rate_limit_headers(sandbox: SandboxServer) -> None:
    """Without a configured limit too, and on errors (404, 422, injected faults)."""
    contact_id = upsert(sandbox, "h@example.com").json()["contact"]["id"]
    sandbox.state.set_fault(GOHIGHLEVEL, "fault@example.com", status=500)
    answers = [
        upsert(sandbox, "h@example.com"),
        tags(sandbox, "POST", contact_id, ["x"]),
        tags(sandbox, "DELETE", contact_id, ["x"]),
        tags(sandbox, "POST", "nope", ["x"]),
        upsert(sandbox, "not-an-email"),
        upsert(sandbox, "fault@example.com"),
        requests.get(f"{sandbox.url}/contacts/{contact_id}", headers=GHL_HEADERS, timeout=5),
    ]

    assert [a.status_code for a in answers] == [200, 201, 200, 404, 422, 500, 200]
    for answer in answers:
        assert all(name in answer.headers for name in RATE_LIMIT_HEADERS), answer.headers
        assert "Retry-After" not in answer.headers
    remaining = [int(a.headers["X-RateLimit-Remaining"]) for a in answers]
    assert remaining[1] < remaining[0]  # counted, though never refused


def test_upsert_with_phone_and_no_email(sandbox: SandboxServer) -> None:
    def by_phone(phone: str, **fields) -> requests.Response:
        return requests.post(
            f"{sandbox.url}/contacts/upsert",
            json={"locationId": LOCATION, "phone": phone, **fields},
            headers=GHL_HEADERS,
            timeout=TIMEOUT,
        )

    first = by_phone("+55 11 99999-0000")
    second = by_phone("+5511999990000", firstName="Bia")
    with_email = upsert(sandbox, "bia@example.com", phone="+5511999990000")

    assert first.status_code == 200 and first.json()["new"] is True
    contact = first.json()["contact"]
    assert "email" not in contact and "emailLowerCase" not in contact  # omitted, not null
    assert second.json()["new"] is False
    assert second.json()["contact"]["id"] == contact["id"]
    assert second.json()["contact"]["firstName"] == "Bia"
    assert with_email.json()["contact"]["id"] == contact["id"]  # matched by phone
    assert with_email.json()["contact"]["email"] == "bia@example.com"


def test_contact_omits_fields_without_value(sandbox: SandboxServer) -> None:
    response = requests.post(
        f"{sandbox.url}/contacts/upsert",
        json={"locationId": LOCATION, "email": "o@example.com", "firstName": None},
        headers=GHL_HEADERS,
        timeout=TIMEOUT,
    )

    contact = response.json()["contact"]
    assert None not in contact.values()
    assert not {"firstName", "lastName", "name", "phone", "firstNameLowerCase"} & set(contact)
    assert contact["email"] == "o@example.com" and contact["tags"] == []


def test_rate_limit_window_moves_while_time_is_frozen(sandbox: SandboxServer) -> None:
    freezegun = pytest.importorskip("freezegun")
    sandbox.state.set_rate_limit(1, 0.3)

    with freezegun.freeze_time("2026-01-01T12:00:00Z"):
        first = upsert(sandbox, "t1@example.com")
        limited = upsert(sandbox, "t2@example.com")
        time.sleep(0.4)  # real time passes; frozen time does not
        later = upsert(sandbox, "t2@example.com")
        payment = sandbox.state.add_payment()

    assert [first.status_code, limited.status_code, later.status_code] == [200, 429, 200]
    # Stored timestamps follow the (frozen) wall clock the service sees.
    assert payment["date_created"].startswith("2026-01-01T08:00:00")


def test_concurrent_upserts_make_one_contact(sandbox: SandboxServer) -> None:
    results: list[bool] = []

    def worker() -> None:
        results.append(upsert(sandbox, "same@example.com").json()["new"])

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 9 + [True]
    assert len(sandbox.state.contacts()) == 1


# -- call log, control routes, reset ---------------------------------------------------


def test_call_log_filters(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()
    get_payment(sandbox, payment["id"])
    search(sandbox, limit=1)
    contact_id = upsert(sandbox, "h@example.com").json()["contact"]["id"]
    tags(sandbox, "DELETE", contact_id, ["x"])

    mp_calls = sandbox.state.calls(api=MERCADOPAGO)
    ghl_calls = sandbox.state.calls(api="ghl")
    deletes = sandbox.state.calls(method="delete")
    searches = sandbox.state.calls(path_contains="/search")

    assert [c["path"] for c in mp_calls] == [
        f"/v1/payments/{payment['id']}",
        "/v1/payments/search",
    ]
    assert mp_calls[0]["key"] == str(payment["id"]) and mp_calls[0]["status"] == 200
    assert [c["method"] for c in ghl_calls] == ["POST", "DELETE"]
    assert ghl_calls[0]["json"]["email"] == "h@example.com"
    assert ghl_calls[0]["key"] == "h@example.com"
    assert ghl_calls[1]["key"] == "h@example.com"
    assert len(deletes) == 1 and deletes[0]["json"] == {"tags": ["x"]}
    assert len(searches) == 1 and searches[0]["query"] == {"limit": "1"}
    assert all(isinstance(c["time"], float) for c in mp_calls + ghl_calls)


def test_control_routes_over_http(sandbox: SandboxServer) -> None:
    base = f"{sandbox.url}/_sandbox"

    created = requests.post(f"{base}/payments", json={"status": "pending"}, timeout=TIMEOUT)
    payment_id = created.json()["id"]
    updated = requests.post(
        f"{base}/payments",
        json={"id": payment_id, "status": "approved"},
        timeout=TIMEOUT,
    )
    fault = requests.post(
        f"{base}/faults",
        json={"api": "mercadopago", "key": str(payment_id), "status": 500, "times": 1},
        timeout=TIMEOUT,
    )
    faulted = get_payment(sandbox, payment_id)
    recovered = get_payment(sandbox, payment_id)
    requests.post(
        f"{base}/random-failures",
        json={"api": "gohighlevel", "rate": 1.0, "seed": 1, "status": 503},
        timeout=TIMEOUT,
    )
    random_failed = upsert(sandbox, "i@example.com")
    requests.post(f"{base}/random-failures", json={"api": "ghl", "rate": 0}, timeout=TIMEOUT)
    rate = requests.post(
        f"{base}/rate-limit", json={"requests": 3, "per_seconds": 5}, timeout=TIMEOUT
    )
    latency = requests.post(
        f"{base}/latency",
        json={"api": "mercadopago", "min_seconds": 0.01, "max_seconds": 0.02},
        timeout=TIMEOUT,
    )
    upsert(sandbox, "i@example.com")
    contacts = requests.get(f"{base}/contacts", timeout=TIMEOUT)
    calls = requests.get(f"{base}/calls", params={"api": "mercadopago"}, timeout=TIMEOUT)
    bad = requests.post(f"{base}/faults", json={"api": "paypal", "key": "*"}, timeout=TIMEOUT)

    assert created.status_code == 200 and created.json()["status"] == "pending"
    assert updated.json()["status"] == "approved"
    assert fault.status_code == 200 and fault.json()["faults"][0]["key"] == str(payment_id)
    assert (faulted.status_code, recovered.status_code) == (500, 200)
    assert random_failed.status_code == 503
    assert rate.json()["rate_limit"] == {"requests": 3, "per_seconds": 5.0, "daily": 200_000}
    assert latency.json()["latency"]["mercadopago"]["max_seconds"] == 0.02
    assert [c["email"] for c in contacts.json()] == ["i@example.com"]
    assert [c["status"] for c in calls.json()] == [500, 200]
    assert bad.status_code == 400 and "api" in bad.json()["error"]
    assert requests.get(f"{base}/health", timeout=TIMEOUT).json() == {"ok": True}

    reset = requests.post(f"{base}/reset", timeout=TIMEOUT)
    assert reset.status_code == 200
    assert sandbox.state.payments() == [] and sandbox.state.contacts() == []
    assert requests.get(f"{base}/settings", timeout=TIMEOUT).json()["rate_limit"] is None


def test_control_routes_are_not_faulted_or_logged(sandbox: SandboxServer) -> None:
    sandbox.state.set_fault(MERCADOPAGO, "*", status=500, times=-1)
    sandbox.state.set_fault(GOHIGHLEVEL, "*", status=500, times=-1)
    sandbox.state.set_rate_limit(1, 10)
    base = f"{sandbox.url}/_sandbox"

    statuses = [
        requests.post(f"{base}/payments", json={}, timeout=TIMEOUT).status_code,
        requests.get(f"{base}/contacts", timeout=TIMEOUT).status_code,
        requests.get(f"{base}/calls", timeout=TIMEOUT).status_code,
        requests.get(f"{base}/calls", timeout=TIMEOUT).status_code,
    ]

    assert statuses == [200, 200, 200, 200]
    assert sandbox.state.calls() == []


def test_reset_forgets_everything(sandbox: SandboxServer) -> None:
    state = sandbox.state
    payment = state.add_payment()
    upsert(sandbox, "j@example.com")
    state.set_fault(MERCADOPAGO, "*", status=500, times=-1)
    state.set_random_failures(GOHIGHLEVEL, rate=1.0, seed=1)
    state.set_rate_limit(1, 10)
    state.set_latency(MERCADOPAGO, 0.2, 0.3)

    state.reset()

    assert state.payments() == [] and state.contacts() == [] and state.calls() == []
    assert state.settings() == {
        "faults": [],
        "random_failures": {},
        "rate_limit": None,
        "latency": {},
    }
    assert get_payment(sandbox, payment["id"]).status_code == 404
    assert all(upsert(sandbox, f"k{i}@example.com").status_code == 200 for i in range(3))


def test_set_fault_rejects_bad_arguments() -> None:
    state = SandboxState()

    with pytest.raises(ValueError):
        state.set_fault("paypal", "*")
    with pytest.raises(ValueError):
        state.set_fault(MERCADOPAGO, "*", times=-2)
    with pytest.raises(ValueError):
        state.set_fault(MERCADOPAGO, "*", status=42)
    with pytest.raises(ValueError):
        state.set_random_failures(MERCADOPAGO, rate=1.5, seed=1)


# -- app factory, server, command line -------------------------------------------------


def test_create_sandbox_app_uses_given_state() -> None:
    state = SandboxState()
    payment = state.add_payment()
    client = create_sandbox_app(state).test_client()

    response = client.get(f"/v1/payments/{payment['id']}", headers=MP_AUTH)

    assert response.status_code == 200
    assert state.calls()[0]["status"] == 200


def test_server_stop_releases_the_port() -> None:
    server = SandboxServer().start()
    url = server.url
    assert requests.get(f"{url}/_sandbox/health", timeout=TIMEOUT).status_code == 200

    server.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sandbox/health", timeout=TIMEOUT)
    with pytest.raises(RuntimeError):
        _ = server.url


def _connection(server: SandboxServer) -> http.client.HTTPConnection:
    host, port = server.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)


def test_connections_are_kept_alive_with_faults_too(sandbox: SandboxServer) -> None:
    """Like the real APIs, one connection serves call after call, injected faults and
    delays included (the service's `requests` sessions reuse it)."""
    payment_id = str(sandbox.state.add_payment()["id"])
    sandbox.state.set_fault(MERCADOPAGO, payment_id, status=500, times=1)
    sandbox.state.set_fault(GOHIGHLEVEL, "*", status=429, retry_after=2, times=1)
    sandbox.state.set_fault(GOHIGHLEVEL, "ghl@example.com", status=0, delay=0.2, times=1)
    connection = _connection(sandbox)
    calls = [
        ("GET", f"/v1/payments/{payment_id}", None, MP_AUTH),
        ("GET", f"/v1/payments/{payment_id}", None, MP_AUTH),
        ("POST", "/contacts/upsert", {"locationId": LOCATION, "email": "a@example.com"}),
        ("POST", "/contacts/upsert", {"locationId": LOCATION, "email": "ghl@example.com"}),
    ]
    statuses, sockets = [], set()
    try:
        for method, path, body, *headers in calls:
            headers = headers[0] if headers else {**GHL_HEADERS, "Content-Type": "application/json"}
            data = json.dumps(body) if body is not None else None
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            response.read()
            assert not response.will_close and response.getheader("Connection") != "close"
            statuses.append(response.status)
            sockets.add(id(connection.sock))
    finally:
        connection.close()
    assert statuses == [500, 200, 429, 200]
    assert len(sockets) == 1
    outcomes = [call["outcome"] for call in sandbox.state.calls()]
    assert outcomes == ["fault", "ok", "fault", "delayed"]


def test_a_client_that_gives_up_on_a_delay_gets_a_new_connection(sandbox: SandboxServer) -> None:
    payment_id = str(sandbox.state.add_payment()["id"])
    sandbox.state.set_fault(MERCADOPAGO, payment_id, status=0, delay=1.0, times=1)
    url = f"{sandbox.url}/v1/payments/{payment_id}"
    with requests.Session() as session:
        with pytest.raises(requests.ReadTimeout):
            session.get(url, headers=MP_AUTH, timeout=0.2)
        # The abandoned connection is not reused for the next call.
        assert session.get(url, headers=MP_AUTH, timeout=TIMEOUT).status_code == 200


def test_stop_closes_kept_alive_connections() -> None:
    """A stopped sandbox is down for every client, even one holding a connection."""
    server = SandboxServer().start()
    connection = _connection(server)
    try:
        connection.request("GET", "/_sandbox/health")
        assert connection.getresponse().read()
        server.stop()
        with pytest.raises((OSError, http.client.HTTPException)):
            connection.request("GET", "/_sandbox/health")
            connection.getresponse().read()
    finally:
        connection.close()
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_line_serves_and_logs_requests() -> None:
    port = _free_port()
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhooks_app.sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"{url}/_sandbox/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "sandbox did not start"
                assert process.poll() is None, "sandbox exited"
                time.sleep(0.1)
        payment = requests.post(f"{url}/_sandbox/payments", json={}, timeout=TIMEOUT).json()
        response = requests.get(f"{url}/v1/payments/{payment['id']}", headers=MP_AUTH, timeout=5)
        assert response.status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)

    assert f"GET /v1/payments/{payment['id']}" in output
