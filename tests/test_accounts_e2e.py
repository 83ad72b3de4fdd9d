"""Issue 18's acceptance: ten accounts end to end, through the real processes (gunicorn,
worker.py, scheduler.py), each with its own MercadoPago seller (token, webhook secret) and
GoHighLevel location (id, token), the sandbox serving them as ten tenants."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from accounts_support import Tenant, create_account, remove_accounts, signed

from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, Payment, WebhookEvent

from processes import Processes, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ACCOUNTS = 10
# Two accounts name their own tags; the others keep the deployment's.
CUSTOM_TAGS = {2: "approved=paid,rejected=declined", 5: "approved=cliente-ativo"}
# The same buyers at every seller: each location must get its own contacts of them.
BUYERS = {
    "approved": "ana@example.com",
    "rejected": "bruno@example.com",
    "refunded": "carla@example.com",
    "pending": "davi@example.com",
}
DEFAULT_TAGS = {
    "approved": "mp-payment-approved",
    "rejected": "mp-payment-rejected",
    "refunded": "mp-payment-refunded",
    "pending": "mp-payment-pending",
}


@pytest.fixture
def tenants(app, sandbox) -> Iterator[list[Tenant]]:
    """Ten accounts, registered in the sandbox as ten sellers and ten locations."""
    remove_accounts()
    made = []
    for number in range(ACCOUNTS):
        tenant = create_account(f"shop-{number}", status_tags=CUSTOM_TAGS.get(number))
        sandbox.state.register_mp_token(tenant.mp_token)
        sandbox.state.register_ghl_token(tenant.ghl_token, tenant.location)
        made.append(tenant)
    yield made
    remove_accounts()


@pytest.fixture
def service(tenants, sandbox, tmp_path) -> Iterator[Processes]:
    """The service as deployed, started once the accounts exist."""
    yield from Processes.deployed(tmp_path, sandbox.url)


def send(service: Processes, tenant: Tenant, payment_id: int, notification_id: int):
    """POST a notification signed with the tenant's secret to the tenant's URL."""
    parts = signed(payment_id, tenant.secret, notification_id=notification_id)
    return requests.post(
        f"{service.url}/webhooks/mp/{tenant.slug}",
        params=parts["query_string"],
        json=parts["json"],
        headers=parts["headers"],
        timeout=10,
    )


def expected_tags(number: int) -> dict[str, str]:
    """The tag of each status in account `number`'s location."""
    tags = dict(DEFAULT_TAGS)
    for pair in (CUSTOM_TAGS.get(number) or "").split(","):
        if pair:
            status, tag = pair.split("=")
            tags[status] = tag
    return tags


def test_ten_accounts_end_to_end(service, tenants, sandbox) -> None:
    state = sandbox.state
    owner_of: dict[int, Tenant] = {}
    sent = []
    for tenant in tenants:
        for position, (status, email) in enumerate(BUYERS.items()):
            payment = state.add_payment(
                owner=tenant.mp_token, status=status, payer={"email": email}
            )
            owner_of[payment["id"]] = tenant
            # The same notification ids at every account: they are unique per account only.
            answer = send(service, tenant, payment["id"], notification_id=5000 + position)
            assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
            sent.append((tenant, payment["id"], 5000 + position, answer.json()["event_id"]))

    def all_final() -> bool:
        db.session.expire_all()
        found = db.session.query(WebhookEvent).all()
        return len(found) == len(sent) and all(e.status in EventStatus.FINAL for e in found)

    wait_until(all_final, 150, 0.3, "for the ten accounts' events to finish")

    stored = {e.id: e for e in db.session.query(WebhookEvent)}
    assert {e.status for e in stored.values()} == {EventStatus.SUCCESS}
    assert all(stored[event_id].account_id == t.id for t, _, _, event_id in sent)
    # Every payment row is its seller's account's, and only there.
    rows = {(p.account_id, int(p.mp_payment_id)) for p in db.session.query(Payment)}
    assert rows == {(t.id, payment_id) for t, payment_id, _, _ in sent}

    # No account read another's payment, nor wrote to another's location.
    for call in state.calls(api="mercadopago"):
        payment_id = int(re.fullmatch(r"/v1/payments/(\d+)", call["path"]).group(1))
        assert (call["token"], call["status"]) == (owner_of[payment_id].mp_token, 200), call
    location_of = {t.ghl_token: t.location for t in tenants}
    for call in state.calls(api="gohighlevel"):
        assert call["token"] in location_of and call["status"] < 400, call
        if call["path"] == "/contacts/upsert":
            assert call["json"]["locationId"] == location_of[call["token"]], call
    by_location: dict[str, dict[str, list[str]]] = {}
    for contact in state.contacts():
        by_location.setdefault(contact["locationId"], {})[contact["email"]] = contact["tags"]
    assert by_location == {
        tenant.location: {
            email: [expected_tags(number)[status]] for status, email in BUYERS.items()
        }
        for number, tenant in enumerate(tenants)
    }

    # A redelivery is a duplicate of that account's event only.
    for tenant, payment_id, notification_id, event_id in sent[:: len(BUYERS)]:
        again = send(service, tenant, payment_id, notification_id)
        assert again.json() == {"status": "duplicate", "event_id": event_id}
    db.session.expire_all()
    assert db.session.query(WebhookEvent).count() == len(sent)
