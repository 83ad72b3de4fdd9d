"""Structured logs: JSON lines carrying the event's fields."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from webhooks_app.logging_setup import (
    BackgroundHandler,
    EventFieldsFilter,
    event_context,
    make_formatter,
)

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


@pytest.fixture
def background_log(tmp_path):
    """A logger writing to a file through a BackgroundHandler, as configure_logging sets it up."""
    path = tmp_path / "background.log"
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(make_formatter("text"))
    background = BackgroundHandler([file_handler])
    background.addFilter(EventFieldsFilter())
    logger = logging.getLogger("webhooks_app.test_background")
    logger.setLevel(logging.INFO)
    logger.addHandler(background)
    yield logger, background, path
    logger.removeHandler(background)
    background.stop()
    file_handler.close()


def test_background_lines_keep_the_callers_event_fields_and_arguments(background_log):
    logger, background, path = background_log
    values = ["before"]
    with event_context(event_id=11, webhook_id="mp:11"):
        logger.info("values %s", values)
    values[0] = "after"  # the writer thread may run later: the line must not see this
    background.stop()  # drains the queue
    line = path.read_text()
    assert "[event_id=11 webhook_id=mp:11] values ['before']" in line
    assert background.listener._thread is None  # the writer thread has ended


def test_after_stop_lines_are_written_at_once(background_log):
    logger, background, path = background_log
    background.stop()
    logger.warning("late")
    assert "WARNING" in path.read_text() and "late" in path.read_text()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_lines_before_os_exit(background_log):
    """RQ's forking worker runs each job in a child that leaves with os._exit."""
    logger, background, path = background_log
    pid = os.fork()
    if pid == 0:  # the child: no writer thread here
        try:
            logger.info("from the child %s", os.getpid())
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.info("from the parent")
    background.stop()
    text = path.read_text()
    assert f"from the child {pid}" in text and "from the parent" in text
