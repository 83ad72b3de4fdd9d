"""Structured logs: JSON lines carrying the event's fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from webhooks_app.logging_setup import EventFieldsFilter, event_context, make_formatter

from conftest import post_webhook, run_worker


@pytest.fixture
def json_lines():
    """Capture the `webhooks_app` logger's output as our JSON handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter("json"))
    handler.addFilter(EventFieldsFilter())
    logger = logging.getLogger("webhooks_app")
    level = logger.level
    logger.setLevel(logging.INFO)  # as configure_logging sets it, also when no app was made yet
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_event_context_fields_reach_every_line(json_lines):
    log = logging.getLogger("webhooks_app.anything")
    with event_context(event_id=7, webhook_id="mp:1"):
        log.info("inside")
    log.info("outside")
    inside, outside = json_lines()
    assert inside["message"] == "inside" and inside["event_id"] == 7
    assert inside["webhook_id"] == "mp:1" and inside["level"] == "INFO"
    assert {"time", "logger", "pid"} <= inside.keys()
    assert "event_id" not in outside and "event_tag" not in outside


def test_receiving_and_processing_lines_carry_event_webhook_payment_and_attempt(
    app, client, sandbox, json_lines
):
    payment = sandbox.state.add_payment()
    event_id = post_webhook(client, payment["id"], notification_id=55).json["event_id"]
    run_worker(app)
    lines = json_lines()
    received = [line for line in lines if "received" in line["message"]]
    assert received and received[0]["event_id"] == event_id
    assert received[0]["webhook_id"] == "mp:55"
    assert received[0]["payment_id"] == str(payment["id"])
    attempt_lines = [line for line in lines if line.get("attempt") == 1]
    messages = " | ".join(line["message"] for line in attempt_lines)
    assert "attempt 1 started" in messages and "success" in messages  # per attempt, final outcome
    assert all(line["event_id"] == event_id for line in attempt_lines)


def test_text_format_tags_event_lines():
    record = logging.LogRecord("webhooks_app.x", logging.INFO, __file__, 1, "hello", None, None)
    with event_context(event_id=3, attempt=2):
        EventFieldsFilter().filter(record)
    assert "[event_id=3 attempt=2] hello" in make_formatter("text").format(record)


@pytest.mark.parametrize("kind", ["json", "text"])
def test_a_formatter_shared_by_two_handlers_writes_the_same_line_to_both(kind):
    formatter = make_formatter(kind)
    streams = [io.StringIO(), io.StringIO()]
    logger = logging.getLogger(f"webhooks_app.test_shared_{kind}")
    logger.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(stream) for stream in streams]
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(EventFieldsFilter())
        logger.addHandler(handler)
    try:
        with event_context(event_id=3):
            logger.info("once %s", "formatted")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    first, second = (stream.getvalue() for stream in streams)
    assert first == second and "once formatted" in first and "event_id" in first
    if kind == "json":
        assert "_formatted" not in json.loads(first)
