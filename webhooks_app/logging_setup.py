"""Logging for the package: stdout (Heroku reads it) and a rotating file."""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"


def configure_logging(app: Flask) -> None:
    """Attach our handlers, once per process, to our loggers and rq-scheduler's.

    The loggers still propagate, so pytest's caplog and any root handler see them.
    """
    level = app.config.get("LOG_LEVEL") or "INFO"
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level)
    if _configured(app):
        return
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    if not app.testing:  # pytest captures records itself
        handlers.append(logging.StreamHandler(sys.stdout))
    log_file = app.config.get("LOG_FILE")
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=10 * 1024 * 1024, backupCount=5))
    for handler in handlers:
        handler.setFormatter(formatter)
        for name in LOGGERS:
            logging.getLogger(name).addHandler(handler)


def _configured(app: Flask) -> bool:
    """True if this process already attached handlers (the first app configures them)."""
    if _CONFIGURED:
        return True
    _CONFIGURED.append(app.name)
    return False


LOGGERS = ("webhooks_app", "rq_scheduler")
_CONFIGURED: list[str] = []
