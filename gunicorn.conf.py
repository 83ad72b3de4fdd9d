"""gunicorn settings read by `gunicorn wsgi:app` (Procfile, Procfile.dev)."""

from webhooks_app.metrics import mark_process_dead


def child_exit(server, worker) -> None:
    """A web worker exited: drop its live Prometheus gauges (multiprocess mode)."""
    mark_process_dead(worker.pid)
