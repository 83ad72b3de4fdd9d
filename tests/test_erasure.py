"""Erasure of a payer's personal data, masking at rest, and logs without e-mails."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from factories import add_event, add_payment
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update
from test_admin import AUTH, PASSWORD, USERNAME
from test_orders_chargebacks import post_topic

from webhooks_app import erasure
from webhooks_app.extensions import db
from webhooks_app.logging_setup import EventFieldsFilter, make_formatter
from webhooks_app.models import (
    Erasure,
    EventStatus,
    MpAlert,
    Payment,
    Subscription,
    WebhookAttempt,
    WebhookEvent,
)
from webhooks_app.personal_data import PersonalTable
from webhooks_app.resources import Chargeback, MerchantOrder, MerchantOrderPayment

from conftest import drain, make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)

EMAIL = "Ana.Lima@Example.com"


def paid(app, client, sandbox, email: str) -> tuple[int, int]:
    """A payment by `email` through the real pipeline, its event retried once (a traceback):
    (payment id, event id)."""
    payment = sandbox.state.add_payment(payer={"email": email})
    sandbox.state.set_fault("mercadopago", str(payment["id"]), status=500, times=1)
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    drain(app)
    event = db.session.get(WebhookEvent, event_id)
    assert event.status == EventStatus.SUCCESS
    return event.payment_id, event_id


def everything_stored() -> str:
    """Every stored column of every table, as one text, to search for an address."""
    db.session.expire_all()
    parts = []
    models = (Payment, WebhookEvent, WebhookAttempt, Erasure, Subscription, MpAlert)
    for model in (*models, MerchantOrder, MerchantOrderPayment, Chargeback):
        for row in db.session.query(model):
            parts.append(repr({c.name: getattr(row, c.name) for c in model.__table__.columns}))
    return "\n".join(parts).lower()


def test_forget_erases_the_payer_everywhere_keeps_the_facts_and_records_it(
    app, client, sandbox, runner
):
    mine_id, mine_event = paid(app, client, sandbox, EMAIL)
    other_id, _ = paid(app, client, sandbox, "someone.else@example.com")
    mine = db.session.get(Payment, mine_id)
    before = (mine.status, mine.amount, mine.mp_payment_id)
    mentioning = add_event(payload={"note": f"from {EMAIL.lower()}"}, status=EventStatus.FAILED)
    attempt = db.session.query(WebhookAttempt).filter_by(event_id=mine_event, number=1).one()
    db.session.execute(
        update(WebhookAttempt)
        .where(WebhookAttempt.id == attempt.id)
        .values(error=f"GHL refused {EMAIL}: duplicate", traceback=f"ValueError: {EMAIL}")
    )
    db.session.commit()
    assert EMAIL.lower() in everything_stored()

    result = runner.invoke(args=["webhooks", "forget", "--email", f"  {EMAIL.upper()} "])
    assert result.exit_code == 0, result.output
    assert "erased: 1 payment(s), 2 event(s), 1 attempt(s)" in result.output
    assert "GoHighLevel" in result.output
    stored = everything_stored()
    assert EMAIL.lower() not in stored

    payment = db.session.get(Payment, mine_id)
    assert payment.payer_email is None and "payer" not in payment.raw
    assert (payment.status, payment.amount, payment.mp_payment_id) == before
    assert payment.raw["transaction_amount"] == 100.0
    event = db.session.get(WebhookEvent, mine_event)
    assert event.purged_at is not None and event.payload is None and event.status == "success"
    assert event.attempt_log[0].error == "GHL refused [erased e-mail]: duplicate"
    assert db.session.get(WebhookEvent, mentioning.id).payload is None
    untouched = db.session.get(Payment, other_id)
    assert untouched.payer_email == "someone.else@example.com" and "payer" in untouched.raw

    (erasure,) = db.session.query(Erasure).all()
    assert (erasure.surface, erasure.payments, erasure.events, erasure.attempts) == (
        "cli",
        1,
        2,
        1,
    )
    assert erasure.subject_hash and re.fullmatch(r"[0-9a-f]{64}", erasure.subject_hash)

    again = runner.invoke(args=["webhooks", "forget", "--email", EMAIL])
    assert "erased: 0 payment(s), 0 event(s), 0 attempt(s) (already erased on" in again.output
    assert db.session.query(Erasure).count() == 1
    assert runner.invoke(args=["webhooks", "forget", "--email", "nope"]).exit_code == 2


def test_forget_reaches_subscriptions_alerts_orders_and_chargebacks(app, client, sandbox, runner):
    email = "Rita.Souza@example.com"
    payment = sandbox.state.add_payment(payer={"email": email}, transaction_amount=80)
    order = sandbox.state.add_merchant_order(payment_ids=[payment["id"]])
    document = {"type": "invoice", "url": "https://files.example.com/1.pdf", "description": email}
    chargeback = sandbox.state.add_chargeback(payment_id=payment["id"], documentation=[document])
    claim = sandbox.state.add_claim(resource_id=payment["id"])
    mine = sandbox.state.add_preapproval(payer_email=email, payer_id=4242)
    theirs = sandbox.state.add_preapproval(payer_email="other@example.com")
    notified = [
        ("payment", payment["id"]),
        ("merchant_order", order["id"]),
        ("chargebacks", chargeback["id"]),
        ("topic_claims_integration_wh", claim["id"]),
        ("stop_delivery_op_wh", payment["id"]),
        ("subscription_preapproval", mine["id"]),
        ("subscription_preapproval", theirs["id"]),
    ]
    for event_type, resource_id in notified:
        assert post_topic(client, event_type, resource_id).status_code == 200
        drain(app)
    events = {(e.type, e.resource_id): e for e in db.session.query(WebhookEvent)}
    assert {e.status for e in events.values()} == {EventStatus.SUCCESS}
    assert email.lower() in everything_stored()

    result = runner.invoke(args=["webhooks", "forget", "--email", email])
    assert result.exit_code == 0, result.output
    assert (
        "erased: 1 payment(s), 6 event(s), 0 attempt(s), 1 subscription(s), 2 alert(s), "
        "1 merchant order(s), 1 chargeback(s)"
    ) in result.output
    assert email.lower() not in everything_stored()

    subscription = db.session.query(Subscription).filter_by(mp_preapproval_id=mine["id"]).one()
    assert subscription.payer_email is None and subscription.status == "authorized"
    assert not {"payer_email", "payer_id", "init_point", "back_url"} & subscription.raw.keys()
    assert subscription.raw["auto_recurring"]["transaction_amount"] == 49.9
    assert subscription.amount is not None and subscription.mp_preapproval_id == mine["id"]
    other = db.session.query(Subscription).filter_by(mp_preapproval_id=theirs["id"]).one()
    assert other.payer_email == "other@example.com" and other.raw["payer_email"]
    for alert in db.session.query(MpAlert):
        assert alert.payer_email is None and "players" not in alert.raw
    claim_row = db.session.query(MpAlert).filter_by(kind=MpAlert.CLAIM).one()
    assert (claim_row.status, claim_row.mp_payment_id) == ("opened", str(payment["id"]))
    order_row = db.session.query(MerchantOrder).one()
    assert not {"payer", "items", "collector"} & order_row.raw.keys()
    assert order_row.raw["payments"][0]["id"] == payment["id"]
    assert order_row.total_amount == 80 and order_row.payment_ids == [str(payment["id"])]
    chargeback_row = db.session.query(Chargeback).one()
    assert "documentation" not in chargeback_row.raw and chargeback_row.amount == 80
    assert chargeback_row.raw["payments"] == [payment["id"]]
    erased = {
        key for key, event in events.items() if db.session.get(WebhookEvent, event.id).purged_at
    }
    assert erased == {(t, str(r)) for t, r in notified[:-1]}  # all but the other payer's


def test_a_table_holding_only_the_payer_id_is_one_more_entry(app, monkeypatch):
    """What wiring a new table takes (e.g. authorized payments, which hold `payer_id`)."""
    probe = Table(
        "erasure_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("payer_id", String(32)),
        Column("amount", Integer),
    )
    probe.create(db.engine)
    try:
        raw = {"id": "sub-9", "payer_email": "lia@example.com", "payer_id": 4242}
        db.session.add(Subscription(mp_preapproval_id="sub-9", payer_email=None, raw=raw))
        db.session.execute(
            probe.insert(),
            [
                {"id": 1, "payer_id": "4242", "amount": 10},
                {"id": 2, "payer_id": "7", "amount": None},
            ],
        )
        db.session.commit()
        entry = PersonalTable(probe, "probe", payer_ids=("payer_id",), raw=None)
        monkeypatch.setattr(erasure, "PERSONAL_TABLES", (*erasure.PERSONAL_TABLES, entry))
        report = erasure.forget("lia@example.com", surface="cli")
        assert report.rows["erasure_probe"] == 1 and "1 probe(s)" in report.summary()
        rows = db.session.execute(select(probe).order_by(probe.c.id)).all()
        assert [tuple(r) for r in rows] == [(1, None, 10), (2, "7", None)]
    finally:
        db.session.rollback()
        probe.drop(db.engine)


def test_pii_masking_masks_the_email_in_every_stored_copy(app, sandbox):
    masking = make_app(sandbox, PII_MASKING=True)
    with masking.app_context():
        client = masking.test_client()
        preapproval = sandbox.state.add_preapproval(payer_email="joana.sub@example.com")
        chargeback = sandbox.state.add_chargeback(
            documentation=[{"description": "signed by joana.cb@example.com"}]
        )
        post_topic(client, "subscription_preapproval", preapproval["id"])
        post_topic(client, "chargebacks", chargeback["id"])
        run_worker(masking)
        db.session.expire_all()
        subscription = db.session.query(Subscription).one()
        assert subscription.raw["payer_email"] == "j***@example.com"
        assert subscription.payer_email == "joana.sub@example.com"  # the CRM's key, and forget's
        assert sandbox.state.find_contact("joana.sub@example.com") is not None
        stored = db.session.query(Chargeback).one().raw  # written by a Core upsert
        assert stored["documentation"][0]["description"] == "signed by j***@example.com"
        db.session.remove()


@pytest.fixture
def admin_app(app, sandbox):
    admin = make_app(sandbox, ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
    with admin.app_context():
        yield admin
        db.session.remove()


def test_the_admin_erasure_form_needs_its_csrf_token_and_records_who(admin_app, sandbox):
    client = admin_app.test_client()
    payment = add_payment(555, payer_email="buyer555@example.com", raw={"id": 555, "payer": {}})
    event = add_event(status=EventStatus.SUCCESS, payment_id=payment.id, latency=1)
    shown = client.get(f"/admin/events/{event.id}", headers=AUTH).text
    assert "purged on" not in shown and "Payload" in shown
    refused = client.post("/admin/erasure", data={"email": "buyer555@example.com"}, headers=AUTH)
    assert refused.status_code == 400
    assert db.session.query(Erasure).count() == 0
    page = client.get("/admin/erasure", headers=AUTH)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = {"email": "buyer555@example.com", "confirm": "1", "csrf_token": token}
    done = client.post("/admin/erasure", data=form, headers=AUTH, follow_redirects=True)
    assert done.status_code == 200 and "Erased: 1 payment(s)" in done.text
    assert "buyer555" not in done.text
    (erasure,) = db.session.query(Erasure).all()
    assert (erasure.surface, erasure.requested_by) == ("admin", USERNAME)
    db.session.expire_all()
    assert db.session.query(Payment).one().payer_email is None
    shown = client.get(f"/admin/events/{event.id}", headers=AUTH).text
    assert "purged on" in shown


def test_pii_masking_masks_the_stored_copy_while_the_crm_gets_the_real_address(app, sandbox):
    masking = make_app(sandbox, PII_MASKING=True)
    with masking.app_context():
        client = masking.test_client()
        payment = sandbox.state.add_payment(payer={"email": "joana@example.com"})
        event_id = post_webhook(client, payment["id"]).json["event_id"]
        run_worker(masking)
        stored = db.session.get(WebhookEvent, event_id).payment
        payer = stored.raw["payer"]
        assert payer["email"] == "j***@example.com"
        assert payer["identification"]["number"] == "*********00"
        assert payer["phone"]["number"] == "*******99"
        assert payer["first_name"] == "Test"  # the CRM's name comes from here
        assert stored.payer_email == "joana@example.com"  # the CRM's key, and forget's
        (contact,) = sandbox.state.contacts()
        assert contact["email"] == "joana@example.com" and contact["firstName"] == "Test"
        db.session.remove()


def test_no_log_line_carries_an_email_address(app, client, sandbox):
    stream = io.StringIO()
    handlers = []
    for kind in ("json", "text"):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(make_formatter(kind))
        handler.addFilter(EventFieldsFilter())
        handlers.append(handler)
    logger = logging.getLogger("webhooks_app")
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        logging.getLogger("webhooks_app.pipeline").warning("GHL said: bad email %s", EMAIL)
        try:
            raise ValueError(f"contact {EMAIL} refused")
        except ValueError:
            logging.getLogger("webhooks_app.processing").exception("attempt failed")
        payment = sandbox.state.add_payment(payer={"email": "carla@example.com"})
        post_webhook(client, payment["id"])
        run_worker(app)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)
    output = stream.getvalue()
    assert EMAIL not in output and "carla@example.com" not in output
    first = json.loads(output.splitlines()[0])
    assert first["message"] == "GHL said: bad email A***@Example.com"
