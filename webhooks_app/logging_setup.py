"""Logging: JSON lines (or plain text in development) to stdout and a rotating file.

Every line logged while an event is being received or processed carries that
event's `event_id`, `webhook_id`, `payment_id` and `attempt`, from a context
variable that `event_context` sets: nobody has to remember to pass them.

The handlers' writes happen on one background thread per process (the logging
cookbook's QueueHandler/QueueListener): with 16 request threads per web
process, formatting and writing each line under the handlers' locks cost more
CPU per webhook than storing it (BENCHMARKS.md, Improvement 6).
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import queue
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flask import Flask
from pythonjsonlogger.json import JsonFormatter

from .pii import redact_emails
from .tracing import set_event_attributes

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d]%(event_tag)s %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
EVENT_FIELDS = ("account", "event_id", "webhook_id", "payment_id", "attempt")
LOGGERS = ("webhooks_app", "rq_scheduler")

# Never mutated in place (always replaced), so a shared empty default is safe.
_event_fields: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "event_log_fields", default=MappingProxyType({})
)
_configured: list[str] = []


@contextmanager
def event_context(**fields: Any) -> Iterator[None]:
    """Attach these event fields to every log line inside the block (nested blocks add up)."""
    token = _event_fields.set({**_event_fields.get(), **fields})
    set_event_attributes(fields)  # and on the current trace span, when tracing
    try:
        yield
    finally:
        _event_fields.reset(token)


def bind_event_fields(**fields: Any) -> None:
    """Add fields to the current event context (e.g. the payment id once it is known)."""
    _event_fields.set({**_event_fields.get(), **fields})
    set_event_attributes(fields)


class EventFieldsFilter(logging.Filter):
    """Copy the current event's fields onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _event_fields.get()
        for name in EVENT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        present = [
            f"{name}={getattr(record, name)}"
            for name in EVENT_FIELDS
            if getattr(record, name) is not None
        ]
        record.event_tag = f" [{' '.join(present)}]" if present else ""
        return True


class EventJsonFormatter(JsonFormatter):
    """JSON lines; event fields only when present; the text tag left out."""

    def add_fields(self, log_record: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record.pop("event_tag", None)
        log_record.pop("_formatted", None)
        for name in EVENT_FIELDS:
            if log_record.get(name) is None:
                log_record.pop(name, None)


class FormatOnce(logging.Formatter):
    """A formatter shared by several handlers (stdout and the file) formats each record once."""

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_formatted")
        if cached is not None and cached[0] is self:
            return cached[1]
        # No line carries an e-mail address (erasure; webhooks_app/pii.py), tracebacks included.
        text = redact_emails(super().format(record))
        record._formatted = (self, text)
        return text


class TextFormatter(FormatOnce):
    pass


class JsonLinesFormatter(FormatOnce, EventJsonFormatter):
    pass


class BackgroundHandler(QueueHandler):
    """Hands each record to one writer thread, so no caller waits on log I/O or locks.

    The writer thread is stopped (and the queue drained) at exit. A forked child
    (RQ's forking worker's work horse) has no writer thread and may leave with
    `os._exit`, so there the records are written at once, as by plain handlers.
    """

    def __init__(self, handlers: list[logging.Handler]) -> None:
        super().__init__(queue.SimpleQueue())
        self.listener = QueueListener(self.queue, *handlers, respect_handler_level=True)
        self.synchronous = False
        self.listener.start()
        atexit.register(self.stop)  # runs before logging's own shutdown (registered earlier)
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def stop(self) -> None:
        """Write what is queued, then stop the writer thread; later records are written at once."""
        if not self.synchronous:
            self.synchronous = True
            self.listener.stop()
            # A record another thread queued just after the writer's last one.
            while True:
                try:
                    record = self.queue.get_nowait()
                except queue.Empty:
                    break
                if record is not None:
                    self.listener.handle(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Render the message now: its arguments may change once the caller goes on.
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        return record

    def emit(self, record: logging.LogRecord) -> None:
        if self.synchronous:
            self.listener.handle(record)
        else:
            super().emit(record)

    def _after_fork_in_child(self) -> None:
        self.synchronous = True
        self.queue = queue.SimpleQueue()  # the parent writes what it had queued


def make_formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonLinesFormatter(
            JSON_FIELDS,
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "process": "pid",
            },
        )
    return TextFormatter(TEXT_FORMAT)


def configure_logging(app: Flask) -> None:
    """Attach our handlers, once per process, to our loggers and rq-scheduler's.

    The loggers still propagate, so pytest's caplog and any root handler see them.
    """
    level = app.config.get("LOG_LEVEL") or "INFO"
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level)
    if _configured:
        return
    _configured.append(app.name)
    formatter = make_formatter(app.config.get("LOG_FORMAT") or "json")
    handlers: list[logging.Handler] = []
    if not app.testing:  # pytest captures records itself
        handlers.append(logging.StreamHandler(sys.stdout))
    log_file = app.config.get("LOG_FILE")
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=10 * 1024 * 1024, backupCount=5))
    if not handlers:
        return
    for handler in handlers:
        handler.setFormatter(formatter)
    background = BackgroundHandler(handlers)
    # The event's fields live in the caller's context: copy them before the record leaves it.
    background.addFilter(EventFieldsFilter())
    for name in LOGGERS:
        logging.getLogger(name).addHandler(background)
