"""The service with every account's events on one queue: bench/fairness.py's baseline.

`gunicorn one_queue_app:app` (bench/ on PYTHONPATH) is `wsgi:app` with one change:
`queueing.account_queue_name` answers RQ_QUEUE_NAME (the default account's bulk queue) for
every account, so the web process puts every account's events on one FIFO queue, as the
service did before per-account queues. Everything else is the service's own code: each
event keeps its account (its secret, MercadoPago token, GoHighLevel location), and the
workers (`python worker.py`, unchanged) still listen on every account's queue; only
that one has jobs.
"""

from flask import current_app

from webhooks_app import queueing


def _one_queue(account_id: int, app=None) -> str:  # noqa: ANN001, ARG001 - same signature
    return (app or current_app).config["RQ_QUEUE_NAME"]


queueing.account_queue_name = _one_queue

from wsgi import app  # noqa: E402 - after the patch

__all__ = ["app"]
