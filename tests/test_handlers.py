"""The handler registry: which topic is processed by what, its lock key and log fields."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from webhooks_app import handlers
from webhooks_app.handlers.payment import PaymentHandler
from webhooks_app.metrics import type_label


def event(event_type: str, resource_id: str = "123") -> SimpleNamespace:
    return SimpleNamespace(id=1, account_id=1, type=event_type, resource_id=resource_id)


def test_payment_events_have_a_handler_other_types_none() -> None:
    assert isinstance(handlers.handler_for("payment"), PaymentHandler)
    assert handlers.handler_for("subscription_preapproval_plan") is None
    assert handlers.handler_for("") is None
    assert handlers.TOPICS == frozenset(
        {
            "payment",
            "merchant_order",
            "topic_merchant_order_wh",
            "chargebacks",
            "topic_chargebacks_wh",
            "subscription_preapproval",
            "subscription_authorized_payment",
            "stop_delivery_op_wh",
            "topic_claims_integration_wh",
        }
    )
    assert handlers.PRIORITY_TOPICS == {"stop_delivery_op_wh", "topic_claims_integration_wh"}


def test_a_topic_with_two_handlers_is_refused() -> None:
    with pytest.raises(ValueError, match="'payment' has two handlers"):
        handlers._by_topic((PaymentHandler(), PaymentHandler()))


def test_lock_key_and_log_fields_come_from_the_handler() -> None:
    assert handlers.lock_key(event("payment", "42")) == "payment:42"
    assert handlers.log_fields(event("payment", "42")) == {"payment_id": "42"}
    assert handlers.lock_key(event("merchant_order", "7")) == "merchant_order:7"
    assert handlers.lock_key(event("topic_chargebacks_wh", "9")) == "chargeback:9"
    charge = event("subscription_authorized_payment", "6114264375")
    assert handlers.lock_key(charge) == "authorized_payment:6114264375"
    assert handlers.log_fields(charge) == {}
    assert handlers.lock_key(event("unknown_topic")) is None
    assert handlers.log_fields(event("unknown_topic")) == {}


def test_type_labels_cover_handled_and_listed_topics() -> None:
    assert type_label("payment") == "payment"
    assert type_label("merchant_order") == "merchant_order"
    assert type_label("topic_chargebacks_wh") == "topic_chargebacks_wh"
    assert type_label("something_else") == "other"
