"""Erasure per account (issue 18): `forget --account` erases one account's rows only."""

from __future__ import annotations

import pytest
from accounts_support import post_for, second_account

from webhooks_app.erasure import forget
from webhooks_app.extensions import db
from webhooks_app.models import Erasure, Payment

from conftest import drain, post_webhook

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def shop_b(app):
    yield from second_account()


def payer_emails() -> dict[int, str | None]:
    db.session.expire_all()
    return {p.account_id: p.payer_email for p in db.session.query(Payment)}


def test_forget_one_accounts_rows_then_every_accounts(app, client, sandbox, shop_b, runner):
    payment = sandbox.state.add_payment()
    email = payment["payer"]["email"]
    post_webhook(client, payment["id"])  # the same payer bought from both merchants
    post_for(client, "shop-b", payment["id"])
    drain(app)
    assert payer_emails() == {1: email, shop_b.id: email}

    result = runner.invoke(args=["webhooks", "forget", "--email", email, "--account", "shop-b"])
    assert result.exit_code == 0, result.output
    assert "erased: 1 payment(s)" in result.output
    assert payer_emails() == {1: email, shop_b.id: None}  # the default account's stays
    (erasure,) = db.session.query(Erasure).all()
    assert erasure.account_id == shop_b.id

    report = forget(email, surface="cli")  # every account: what is left
    assert report.payments == 1 and report.previously is None  # shop-b's was not everyone's
    assert payer_emails() == {1: None, shop_b.id: None}
    assert db.session.get(Erasure, report.erasure_id).account_id is None
    again = forget(email, surface="cli", account_id=shop_b.id)
    assert again.payments == 0 and again.previously is not None and again.erasure_id is None

    unknown = runner.invoke(args=["webhooks", "forget", "--email", email, "--account", "nobody"])
    assert unknown.exit_code == 2 and "nobody" in unknown.output
