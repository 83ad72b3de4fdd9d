"""The processing ceiling's job: does nothing (bench/processing.py enqueues it)."""


def noop(event_id: int) -> str:
    return "success"
