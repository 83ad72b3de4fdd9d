"""`/api/openapi.json` is true: schemathesis drives every operation through WSGI.

For inputs the schema allows (and for some it does not) the API must never
answer 5xx, must answer only documented status codes and content types, and
every body must match its documented schema. Kept short: a few examples each.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from factories import add_event, add_payment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from webhooks_app.extensions import db
from webhooks_app.models import (
    AttemptOutcome,
    EventStatus,
    MpAlert,
    Subscription,
    WebhookAttempt,
)
from webhooks_app.openapi import openapi_document
from webhooks_app.resources import AuthorizedPayment
from webhooks_app.timeutil import utcnow

from conftest import api_headers

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


MAX_EXAMPLES = 12


@pytest.fixture
def api_schema(app):
    """The app's own document, with rows of every kind for the operations to find."""
    payment = add_payment(1, ghl_contact_id="contact-1", tags_applied=["mp-payment-approved"])
    for status in EventStatus.ALL:
        event = add_event(
            status=status,
            resource_id="1",
            payment_id=payment.id,
            attempts=1,
            last_error="boom" if status == EventStatus.FAILED else None,
            latency=2.0 if status == EventStatus.SUCCESS else None,
            received_at=utcnow() - timedelta(minutes=3),
        )
        now = utcnow()
        db.session.add(
            WebhookAttempt(
                event_id=event.id,
                number=1,
                started_at=now,
                finished_at=now,
                duration_ms=5,
                outcome=AttemptOutcome.FAILED,
                error="boom",
                traceback="Traceback (most recent call last): ...",
                retryable=False,
            )
        )
    db.session.add(
        MpAlert(
            kind=MpAlert.FRAUD_ALERT,
            mp_resource_id="1",
            mp_payment_id="1",
            status="stop_delivery",
            raw={"data": {"payment_id": 1, "merchant_order": 2}},
            alerted_at=utcnow(),
        )
    )
    db.session.commit()
    add_subscription_with_a_charge("1", payment_id="1")
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def add_subscription_with_a_charge(mp_id: str, payment_id: str) -> None:
    """A subscription (MercadoPago preapproval) and one charge of it, linked."""
    now = utcnow()
    subscription = Subscription(
        mp_preapproval_id=mp_id, status="authorized", payer_email="sub@example.com", raw={}
    )
    db.session.add(subscription)
    db.session.flush()
    db.session.add(
        AuthorizedPayment(
            mp_authorized_payment_id=f"61{mp_id}",
            mp_preapproval_id=mp_id,
            subscription_id=subscription.id,
            mp_payment_id=payment_id,
            status="processed",
            payment_status="approved",
            amount=Decimal("49.90"),
            debit_date=now,
            retry_attempt=0,
            mp_last_modified=now,
            raw={},
        )
    )
    db.session.commit()


# One test per operation, listed from the document itself: a new one is tested too.
OPERATIONS = [
    (method.upper(), path)
    for path, methods in openapi_document()["paths"].items()
    for method in methods
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_api_keeps_its_documented_promises(api_schema, method, path):
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        case.call_and_validate(headers=api_headers(), checks=CHECKS)

    call()


def test_the_document_is_served_as_written(client):
    assert client.get("/api/openapi.json").json == openapi_document()


def test_a_subscription_with_its_charges_is_answered_as_documented(api_schema):
    operation = api_schema["/api/subscriptions/{mp_id}"]["GET"]
    response = operation.Case(path_parameters={"mp_id": "1"}).call_and_validate(
        headers=api_headers(), checks=CHECKS
    )
    (charge,) = response.json()["authorized_payments"]
    assert (charge["mp_authorized_payment_id"], charge["mp_payment_id"]) == ("611", "1")
