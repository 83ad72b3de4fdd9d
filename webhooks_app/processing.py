"""Where every queued job finds its function: `queueing.PROCESS_EVENT_JOB` is
"webhooks_app.processing.process_event", stored in each job in Redis.

The attempt itself lives in `attempts` (with `claims`, `retries`, `locks` and
`statements`); replays in `replays`. Keep this name importable while old jobs drain.
"""

from __future__ import annotations

from .attempts import process_event

__all__ = ["process_event"]
