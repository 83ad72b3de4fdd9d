"""`flask webhooks accounts …` and `--account` on the commands that list or act on events
and resources: secrets never printed, another account's rows never reached."""

from __future__ import annotations

import json
import logging

import pytest
from account_rows import SECRET_MARK, SHARED_IDS, make_account, secrets_of, seed
from cryptography.fernet import Fernet

from webhooks_app import account_ops, secret_box
from webhooks_app.accounts import DEFAULT_SLUG
from webhooks_app.extensions import db
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.queueing import get_redis

from conftest import statuses

pytestmark = pytest.mark.timeout(60)


def run(runner, *args: str, input: str | None = None, code: int = 0):
    """Invoke `flask webhooks …`; its exit code is `code`, and no secret is in its output."""
    result = runner.invoke(args=["webhooks", *args], input=input)
    assert result.exit_code == code, (args, result.output, result.exception)
    assert SECRET_MARK not in result.output
    return result


def add_acme(runner, *extra: str, slug: str = "acme", code: int = 0):
    secrets = secrets_of("acme")
    return run(
        runner,
        *("accounts", "add", slug, "--name", "Acme", "--ghl-location", "loc-acme"),
        *("--mp-access-token", secrets["mp_access_token"]),
        *("--webhook-secret", secrets["mp_webhook_secret"]),
        *("--ghl-token", secrets["ghl_api_token"]),
        *extra,
        code=code,
    )


def test_accounts_add_list_show_edit_never_print_a_secret(runner, caplog):
    caplog.set_level(logging.DEBUG)
    added = add_acme(runner, "--tag-mode", "replace", "--retention-days", "30")
    assert "account acme added" in added.output and "/webhooks/mp/acme" in added.output
    account = account_ops.find_account("acme")
    assert (
        secret_box.decrypt(account.mp_access_token_encrypted)
        == secrets_of("acme")["mp_access_token"]
    )
    assert (account.tag_mode, account.retention_days) == ("replace", 30.0)

    again = add_acme(runner, code=1)
    assert "exists already" in again.output
    assert "slug" in add_acme(runner, slug="Bad Slug", code=1).output
    assert "GHL_TAG_MODE" in add_acme(runner, "--tag-mode", "x", slug="other", code=1).output

    listed = run(runner, "accounts", "list")
    assert "acme" in listed.output and DEFAULT_SLUG in listed.output
    assert "2 account(s)" in listed.output
    as_json = json.loads(run(runner, "accounts", "list", "--json").output)
    assert [a["slug"] for a in as_json["accounts"]] == [DEFAULT_SLUG, "acme"]
    shown = run(runner, "accounts", "show", "acme")
    assert "mp_webhook_secret_set: True" in shown.output
    assert json.loads(run(runner, "accounts", "show", "acme", "--json").output)["name"] == "Acme"
    assert "does not exist" in run(runner, "accounts", "show", "nope", code=1).output

    edited = run(runner, "accounts", "edit", "acme", "--name", "Acme Corp", "--tag-mode", "")
    assert "Acme Corp" in edited.output
    db.session.refresh(account)
    assert account.tag_mode is None
    bad_edit = run(runner, "accounts", "edit", "acme", "--status-tags", "nonsense", code=1)
    assert "error" in bad_edit.output.lower()
    new_token = f"new-{SECRET_MARK}-mp"
    run(runner, "accounts", "edit", "acme", "--prompt-secrets", input=f"{new_token}\n\n")
    db.session.refresh(account)
    assert secret_box.decrypt(account.mp_access_token_encrypted) == new_token
    assert (
        secret_box.decrypt(account.ghl_api_token_encrypted) == secrets_of("acme")["ghl_api_token"]
    )
    assert "(acme) created" in caplog.text and SECRET_MARK not in caplog.text


def test_an_agencys_three_steps_with_hidden_input(runner, client):
    """README, "three steps": add (tokens prompted), then the secret MercadoPago shows."""
    secrets = secrets_of("globex")
    answers = "\n".join([secrets["mp_access_token"], secrets["ghl_api_token"]])
    added = run(
        runner, "accounts", "add", "globex", "--ghl-location", "loc-g", input=answers + "\n"
    )
    assert "/webhooks/mp/globex" in added.output and "rotate-secret globex" in added.output
    assert SECRET_MARK not in added.output
    account = account_ops.find_account("globex")
    assert account.name == "globex" and not account.has_secret("mp_webhook_secret")
    assert secret_box.decrypt(account.ghl_api_token_encrypted) == secrets["ghl_api_token"]
    assert client.post("/webhooks/mp/globex?data.id=1&type=payment", json={}).status_code == 401

    pasted = run(
        runner, "accounts", "rotate-secret", "globex", input=secrets["mp_webhook_secret"] + "\n"
    )
    assert "webhook secret set" in pasted.output and SECRET_MARK not in pasted.output
    account = account_ops.find_account("globex")
    db.session.refresh(account)
    decrypted = secret_box.decrypt(account.mp_webhook_secret_encrypted)
    assert decrypted == secrets["mp_webhook_secret"]


def test_disable_enable_rotate_token_delete(runner, client):
    make_account("acme")
    run(runner, "accounts", "disable", "acme")
    assert account_ops.find_account("acme").enabled is False
    run(runner, "accounts", "enable", "acme")
    assert account_ops.find_account("acme").enabled is True

    old = secrets_of("acme")["mp_webhook_secret"]
    rotating = run(runner, "accounts", "rotate-secret", "acme", input=f"new-{SECRET_MARK}\n")
    assert "--finish" in rotating.output
    account = account_ops.find_account("acme")
    assert secret_box.decrypt(account.mp_webhook_secret_encrypted) == f"new-{SECRET_MARK},{old}"
    run(runner, "accounts", "rotate-secret", "acme", "--finish")
    db.session.refresh(account)
    assert secret_box.decrypt(account.mp_webhook_secret_encrypted) == f"new-{SECRET_MARK}"
    refused = run(runner, "accounts", "rotate-secret", "acme", "--secret", "a,b", code=1)
    assert "comma" in refused.output

    issued = run(runner, "accounts", "token", "acme")
    token = issued.output.strip().splitlines()[-1]
    assert token.startswith("acct_acme_")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/webhook-events", headers=headers).status_code == 200
    run(runner, "accounts", "token", "acme", "--revoke")
    assert client.get("/api/webhook-events", headers=headers).status_code == 401

    seed(account_ops.find_account("acme"))
    assert run(runner, "accounts", "delete", "acme", code=2)
    deleted = run(runner, "accounts", "delete", "acme", "--yes")
    assert "account acme deleted" in deleted.output and "3 events" in deleted.output
    assert account_ops.find_account("acme") is None
    default = run(runner, "accounts", "delete", DEFAULT_SLUG, "--yes", code=1)
    assert "cannot be deleted" in default.output


def test_reencrypt_under_a_new_key_and_generate_key(app, runner):
    make_account("acme")
    key = run(runner, "accounts", "generate-key").output.strip()
    Fernet(key.encode())  # a usable key
    old_key = secret_box._keys()[0]
    app.config["ACCOUNT_SECRET_KEYS"] = f"{key},{old_key}"
    assert "2 account(s)" in run(runner, "accounts", "reencrypt").output  # default too
    app.config["ACCOUNT_SECRET_KEYS"] = key  # the old key dropped: still readable
    account = account_ops.find_account("acme")
    assert (
        secret_box.decrypt(account.ghl_api_token_encrypted) == secrets_of("acme")["ghl_api_token"]
    )


@pytest.fixture
def two_accounts(app):
    return seed(make_account("acme")), seed(make_account("globex"))


def test_account_option_filters_listings(runner, two_accounts):
    acme, globex = two_accounts
    listed = json.loads(run(runner, "list", "--account", "acme", "--json").output)
    assert sorted(e["id"] for e in listed["events"]) == sorted(acme.events.values())
    everything = json.loads(run(runner, "list", "--json").output)
    assert everything["total"] == 6
    unknown = run(runner, "list", "--account", "nope", code=2)
    assert "no account has the slug" in unknown.output

    stats = json.loads(run(runner, "stats", "--account", "globex", "--json").output)
    assert stats["total_events"] == 3 and stats["payments"] == 1
    assert "total       3" in run(runner, "stats", "--account", "acme").output

    subscriptions = run(runner, "subscriptions", "--account", "acme")
    assert "sub@acme.example" in subscriptions.output
    assert "globex" not in subscriptions.output
    assert "2 subscription(s)" in run(runner, "subscriptions").output
    assert "1 chargeback(s)" in run(runner, "chargebacks", "--account", "acme").output
    assert "2 chargeback(s)" in run(runner, "chargebacks").output
    assert "1 alert(s)" in run(runner, "alerts", "--account", "globex").output

    show = run(runner, "subscription", SHARED_IDS["subscription"], "--account", "globex")
    assert "sub@globex.example" in show.output
    order = run(runner, "order", SHARED_IDS["order"], "--account", "acme", "--json")
    assert json.loads(order.output)["payments"][0]["payer_email"] == "buyer@acme.example"


def test_account_option_refuses_another_accounts_rows(app, runner, two_accounts):
    acme, globex = two_accounts
    theirs = globex.events[EventStatus.FAILED]
    shown = run(runner, "show", str(theirs), "--account", "acme", code=1)
    assert f"event {theirs} does not exist in account acme" in shown.output
    run(runner, "show", str(theirs), "--account", "globex")

    before = db.session.get(WebhookEvent, theirs).updated_at
    replay = run(runner, "replay", str(theirs), "--account", "acme", "--force", code=1)
    assert f"event {theirs} does not exist" in replay.output  # as for a missing one
    db.session.expire_all()
    assert db.session.get(WebhookEvent, theirs).updated_at == before
    assert statuses()[theirs] == EventStatus.FAILED
    assert get_redis(app).keys(f"rq:job:event-{theirs}-*") == []

    retried = run(runner, "retry-failed", "--account", "acme")
    assert f"event {acme.events[EventStatus.FAILED]}: re-queued" in retried.output
    assert "replayed 1 event(s)" in retried.output
    assert statuses()[theirs] == EventStatus.FAILED
    by_status = run(runner, "replay", "--status", "failed", "--account", "globex", "--dry-run")
    assert f"event {theirs}: would be re-queued" in by_status.output
    assert "1 event(s) would be replayed" in by_status.output

    missing = run(runner, "order", "nope", "--account", "acme", code=1)
    assert "is not stored in account acme" in missing.output
