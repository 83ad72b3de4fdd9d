"""The sandbox serves many tenants as the real APIs do: MercadoPago sellers (one access token
each, owning their resources) and GoHighLevel sub-accounts (one location token each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from webhooks_app.sandbox import MERCADOPAGO, SandboxServer

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5
SELLER_A, SELLER_B, STRANGER = "mp-token-a", "mp-token-b", "mp-token-unknown"
GHL_A, GHL_B = "ghl-token-a", "ghl-token-b"
LOCATION_A, LOCATION_B = "location-a", "location-b"
# What MercadoPago answers for a payment that is not the caller's (or does not exist).
PAYMENT_NOT_FOUND = {
    "message": "Payment not found",
    "error": "not_found",
    "status": 404,
    "cause": [{"code": 2000, "description": "Payment not found", "data": None}],
}
# GoHighLevel's answer to a location token used on another location (highlevel-api-docs#213).
WRONG_LOCATION = {"statusCode": 403, "message": "The token does not have access to this location."}


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A fresh sandbox with two sellers and two locations registered."""
    with SandboxServer() as server:
        for mp, ghl, location in ((SELLER_A, GHL_A, LOCATION_A), (SELLER_B, GHL_B, LOCATION_B)):
            server.state.register_mp_token(mp)
            server.state.register_ghl_token(ghl, location)
        yield server


def mp_get(sandbox: SandboxServer, path: str, token: str, **params) -> requests.Response:
    return requests.get(
        f"{sandbox.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def ghl(sandbox: SandboxServer, method: str, path: str, token: str, body: dict):
    return requests.request(
        method,
        f"{sandbox.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Version": "2021-07-28"},
        timeout=TIMEOUT,
    )


def upsert(sandbox: SandboxServer, token: str, location: str, email: str) -> requests.Response:
    return ghl(sandbox, "POST", "/contacts/upsert", token, {"locationId": location, "email": email})


def test_a_payment_is_read_by_its_seller_only(sandbox: SandboxServer) -> None:
    mine = sandbox.state.add_payment(owner=SELLER_A, status="approved")
    theirs = sandbox.state.add_payment(owner=SELLER_B, status="rejected")
    nobodys = sandbox.state.add_payment(status="pending")

    assert mp_get(sandbox, f"/v1/payments/{mine['id']}", SELLER_A).json()["status"] == "approved"
    refused = mp_get(sandbox, f"/v1/payments/{theirs['id']}", SELLER_A)
    missing = mp_get(sandbox, "/v1/payments/1", SELLER_A)
    # Another seller's payment is indistinguishable from one that does not exist.
    assert (refused.status_code, refused.json()) == (404, PAYMENT_NOT_FOUND)
    assert (missing.status_code, missing.json()) == (404, PAYMENT_NOT_FOUND)
    assert mp_get(sandbox, f"/v1/payments/{theirs['id']}", SELLER_B).status_code == 200
    # Without an owner: everybody's, as before tenants.
    assert mp_get(sandbox, f"/v1/payments/{nobodys['id']}", SELLER_B).status_code == 200
    # An update keeps the owner.
    sandbox.state.add_payment(id=theirs["id"], status="approved")
    assert mp_get(sandbox, f"/v1/payments/{theirs['id']}", SELLER_A).status_code == 404


def test_unknown_tokens_are_refused_once_tenants_are_registered(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment()

    answer = mp_get(sandbox, f"/v1/payments/{payment['id']}", STRANGER)

    assert answer.status_code == 401 and answer.json()["status"] == 401
    assert ghl(sandbox, "GET", "/contacts/x", "ghl-unknown", {}).status_code == 401


def test_search_lists_the_callers_payments_only(sandbox: SandboxServer) -> None:
    a1 = sandbox.state.add_payment(owner=SELLER_A, status="approved")
    a2 = sandbox.state.add_payment(owner=SELLER_A, status="rejected")
    b1 = sandbox.state.add_payment(owner=SELLER_B, status="approved")

    found_a = mp_get(sandbox, "/v1/payments/search", SELLER_A, sort="date_created").json()
    approved_b = mp_get(sandbox, "/v1/payments/search", SELLER_B, status="approved").json()

    assert sorted(p["id"] for p in found_a["results"]) == sorted([a1["id"], a2["id"]])
    assert found_a["paging"]["total"] == 2
    assert [p["id"] for p in approved_b["results"]] == [b1["id"]]


@pytest.mark.parametrize(
    ("path", "make"),
    [
        ("/merchant_orders/{id}", lambda s, owner: s.add_merchant_order(owner=owner)),
        ("/v1/chargebacks/{id}", lambda s, owner: s.add_chargeback(owner=owner)),
        ("/preapproval/{id}", lambda s, owner: s.add_preapproval(owner=owner)),
        (
            "/authorized_payments/{id}",
            lambda s, owner: s.add_authorized_payment(
                preapproval_id=s.add_preapproval(owner=owner)["id"]
            ),
        ),
        (  # a claim is its payment's seller's
            "/post-purchase/v1/claims/{id}",
            lambda s, owner: s.add_claim(resource_id=s.add_payment(owner=owner)["id"]),
        ),
    ],
)
def test_every_resource_belongs_to_its_seller(sandbox: SandboxServer, path: str, make) -> None:
    resource = make(sandbox.state, SELLER_A)
    url = path.format(id=resource["id"])

    assert mp_get(sandbox, url, SELLER_A).status_code == 200
    refused = mp_get(sandbox, url, SELLER_B)
    assert refused.status_code == 404 and refused.json()["error"] == "not_found"


def test_resources_made_from_a_sellers_resource_are_that_sellers(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment(owner=SELLER_A)
    chargeback = sandbox.state.add_chargeback(payment_id=payment["id"])
    order = sandbox.state.add_merchant_order(payment_ids=[payment["id"]])
    chargeback_b = sandbox.state.add_chargeback(owner=SELLER_B)  # with a new payment
    preapproval = sandbox.state.add_preapproval(owner=SELLER_B)
    charge = sandbox.state.add_authorized_payment(preapproval_id=preapproval["id"])

    for url in (f"/v1/chargebacks/{chargeback['id']}", f"/merchant_orders/{order['id']}"):
        assert mp_get(sandbox, url, SELLER_B).status_code == 404
        assert mp_get(sandbox, url, SELLER_A).status_code == 200
    for payment_id in (chargeback_b["payments"][0], charge["payment"]["id"]):
        assert mp_get(sandbox, f"/v1/payments/{payment_id}", SELLER_A).status_code == 404
        assert mp_get(sandbox, f"/v1/payments/{payment_id}", SELLER_B).status_code == 200


def test_an_owner_must_be_a_registered_token(sandbox: SandboxServer) -> None:
    with pytest.raises(ValueError, match="registered"):
        sandbox.state.add_payment(owner=STRANGER)
    assert sandbox.state.payments() == []


def test_no_tenants_means_any_token_and_every_payment(sandbox: SandboxServer) -> None:
    sandbox.state.reset()  # forgets the registered tenants
    payment = sandbox.state.add_payment()

    assert sandbox.state.tenants() == {"mercadopago": [], "gohighlevel": {}}
    assert mp_get(sandbox, f"/v1/payments/{payment['id']}", "anything").status_code == 200
    assert upsert(sandbox, "anything", LOCATION_B, "x@example.com").status_code == 200


def test_a_location_token_works_in_its_location_only(sandbox: SandboxServer) -> None:
    created = upsert(sandbox, GHL_A, LOCATION_A, "ann@example.com")
    elsewhere = upsert(sandbox, GHL_A, LOCATION_B, "ann@example.com")
    contact_id = created.json()["contact"]["id"]
    foreign_tags = ghl(sandbox, "POST", f"/contacts/{contact_id}/tags", GHL_B, {"tags": ["x"]})
    foreign_removal = ghl(sandbox, "DELETE", f"/contacts/{contact_id}/tags", GHL_B, {"tags": []})
    foreign_read = ghl(sandbox, "GET", f"/contacts/{contact_id}", GHL_B, {})
    own_tags = ghl(sandbox, "POST", f"/contacts/{contact_id}/tags", GHL_A, {"tags": ["paid"]})

    assert created.status_code == 200
    for refused in (elsewhere, foreign_tags, foreign_removal, foreign_read):
        assert (refused.status_code, refused.json()) == (403, WRONG_LOCATION)
    assert own_tags.status_code == 201
    contacts = sandbox.state.contacts()
    assert [(c["locationId"], c["tags"]) for c in contacts] == [(LOCATION_A, ["paid"])]


def test_the_startup_ghl_token_is_not_bound_to_a_location(sandbox: SandboxServer) -> None:
    sandbox.state.ghl_token = "agency-token"
    try:
        assert upsert(sandbox, "agency-token", LOCATION_A, "a@example.com").status_code == 200
        assert upsert(sandbox, "agency-token", LOCATION_B, "b@example.com").status_code == 200
    finally:
        sandbox.state.ghl_token = None


def test_the_call_log_names_each_calls_token(sandbox: SandboxServer) -> None:
    payment = sandbox.state.add_payment(owner=SELLER_B)
    mp_get(sandbox, f"/v1/payments/{payment['id']}", SELLER_B)
    upsert(sandbox, GHL_A, LOCATION_A, "c@example.com")

    assert [(c["api"], c["token"], c["status"]) for c in sandbox.state.calls()] == [
        (MERCADOPAGO, SELLER_B, 200),
        ("gohighlevel", GHL_A, 200),
    ]


def test_tenants_through_the_control_api(sandbox: SandboxServer) -> None:
    control = f"{sandbox.url}/_sandbox"
    sandbox.state.reset()

    mp_only = requests.post(f"{control}/tenants", json={"mp_access_token": "c"}, timeout=TIMEOUT)
    both = requests.post(
        f"{control}/tenants",
        json={"mp_access_token": "d", "ghl_token": "ghl-d", "ghl_location_id": "loc-d"},
        timeout=TIMEOUT,
    )
    no_location = requests.post(f"{control}/tenants", json={"ghl_token": "e"}, timeout=TIMEOUT)
    empty = requests.post(f"{control}/tenants", json={}, timeout=TIMEOUT)
    owned = requests.post(f"{control}/payments", json={"owner": "d"}, timeout=TIMEOUT).json()
    bad_owner = requests.post(f"{control}/payments", json={"owner": "zzz"}, timeout=TIMEOUT)

    assert mp_only.status_code == both.status_code == 200
    assert both.json() == {"mercadopago": ["c", "d"], "gohighlevel": {"ghl-d": "loc-d"}}
    assert no_location.status_code == empty.status_code == bad_owner.status_code == 400
    assert requests.get(f"{control}/tenants", timeout=TIMEOUT).json() == both.json()
    assert mp_get(sandbox, f"/v1/payments/{owned['id']}", "c").status_code == 404
    assert mp_get(sandbox, f"/v1/payments/{owned['id']}", "d").status_code == 200
    requests.post(f"{control}/reset", timeout=TIMEOUT)
    assert sandbox.state.tenants() == {"mercadopago": [], "gohighlevel": {}}
