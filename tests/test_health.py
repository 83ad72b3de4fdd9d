"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import re

from sqlalchemy import text

from webhooks_app.extensions import db

from conftest import API_TOKEN, make_app, post_webhook, run_worker


def test_healthz_answers_without_checking_anything(sandbox):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    assert down.test_client().get("/healthz").json == {"status": "ok"}


def test_readyz_when_everything_is_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}


def test_readyz_fails_when_redis_is_down(app, sandbox):
    down = make_app(sandbox, REDIS_URL="redis://127.0.0.1:1/0")
    response = down.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"].startswith("unreachable")
    assert response.json["checks"]["database"] == "ok"


def test_readyz_fails_when_the_database_is_down(sandbox):
    down = make_app(sandbox, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://postgres@127.0.0.1:1/x")
    response = down.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"].startswith("unreachable")


def test_readyz_fails_when_migrations_are_behind(app, client):
    with db.engine.begin() as connection:
        (revision,) = connection.execute(text("SELECT version_num FROM alembic_version")).one()
        connection.execute(text("DELETE FROM alembic_version"))
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "head is" in response.json["checks"]["migrations"]
    finally:
        with db.engine.begin() as connection:
            connection.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})


def scrape(client) -> str:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def value(metrics: str, name: str, **labels: str) -> float:
    """A sample's value (0 when absent); labels must all match."""
    for line in metrics.splitlines():
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


def test_metrics_need_the_api_token(client, sandbox):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer no"}).status_code == 401
    closed = make_app(sandbox, API_TOKEN=None)
    assert closed.test_client().get("/metrics").status_code == 503


def test_metrics_move_when_things_happen(app, client, sandbox):
    before = scrape(client)
    payment = sandbox.state.add_payment()
    post_webhook(client, payment["id"], notification_id=1)
    post_webhook(client, payment["id"], notification_id=1)  # a duplicate
    post_webhook(client, payment["id"], secret="wrong")  # a bad signature
    middle = scrape(client)
    assert value(middle, "webhooks_pending_events") == 1
    assert value(middle, "webhooks_queue_depth") == 1
    run_worker(app)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("webhooks_received_total", type="payment", outcome="accepted") == 1
    assert moved("webhooks_received_total", type="payment", outcome="duplicate") == 1
    assert moved("webhooks_rejected_total", reason="signature") == 1
    assert moved("webhook_attempts_total", outcome="success") == 1
    assert moved("webhook_events_finished_total", status="success") == 1
    assert moved("webhook_processing_latency_seconds_count") == 1
    assert moved("api_call_duration_seconds_count", service="mercadopago", status="200") == 1
    assert moved("api_call_duration_seconds_count", service="gohighlevel", status="200") == 2
    assert value(after, "webhooks_pending_events") == 0
    assert value(after, "webhooks_queue_depth") == 0


def test_failed_api_calls_are_counted_by_status(app, client, sandbox):
    before = scrape(client)
    post_webhook(client, 404404)  # MercadoPago: no such payment
    run_worker(app)
    after = scrape(client)
    name = "api_call_duration_seconds_count"
    assert (
        value(after, name, service="mercadopago", status="404")
        - value(before, name, service="mercadopago", status="404")
        == 1
    )
    assert value(after, "webhook_attempts_total", outcome="retry") >= 1
