"""MercadoPago's `x-signature` scheme for Webhooks notifications.

The header looks like `ts=1704908010,v1=<hex>`; v1 is HMAC-SHA256 (hex), keyed
with the application's secret, of the manifest
`id:{data.id};request-id:{x-request-id};ts:{ts};`, where `data.id` comes from
the query string (lower-cased when alphanumeric) and a part whose value is
missing is left out.
"""

from __future__ import annotations

import hashlib
import hmac
import time


class SignatureError(ValueError):
    """The notification's signature is missing, malformed or wrong."""


def build_manifest(data_id: str | None, request_id: str | None, ts: str | None) -> str:
    """The string MercadoPago signs."""
    if data_id and data_id.isalnum():
        data_id = data_id.lower()
    parts = [("id", data_id), ("request-id", request_id), ("ts", ts)]
    return "".join(f"{name}:{value};" for name, value in parts if value)


def compute_signature(secret: str, data_id: str | None, request_id: str | None, ts: str) -> str:
    """The hex v1 value for these parts."""
    manifest = build_manifest(data_id, request_id, ts)
    return hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()


def parse_signature_header(header: str) -> tuple[str, str]:
    """Split `ts=…,v1=…` into (ts, v1)."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    ts, v1 = fields.get("ts"), fields.get("v1")
    if not ts or not v1:
        raise SignatureError("x-signature must look like 'ts=<timestamp>,v1=<hex digest>'")
    return ts, v1


def verify_signature(
    secret: str,
    header: str | None,
    request_id: str | None,
    data_id: str | None,
    *,
    tolerance: float = 0,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `header` is MercadoPago's signature of these values.

    With `tolerance` (seconds, 0 = off), a signature whose `ts` is further than
    that from `now` is refused too.
    """
    if not header:
        raise SignatureError("missing x-signature header")
    ts, received = parse_signature_header(header)
    expected = compute_signature(secret, data_id, request_id, ts)
    # Constant-time: a timing difference must not reveal how much of a forgery matched.
    if not hmac.compare_digest(expected.encode(), received.lower().encode()):
        raise SignatureError("x-signature does not match this notification")
    if tolerance:
        age = abs((time.time() if now is None else now) - timestamp_seconds(ts))
        if age > tolerance:
            raise SignatureError(f"x-signature timestamp is {age:.0f}s away from now")


def timestamp_seconds(ts: str) -> float:
    """`ts` in seconds; MercadoPago sends seconds in some places and milliseconds in others."""
    try:
        value = float(ts)
    except ValueError:
        raise SignatureError("x-signature ts is not a number") from None
    # Any real time in milliseconds is above 10^11; in seconds that is the year 5138.
    return value / 1000 if value > 1e11 else value


def sign(secret: str, data_id: str | None, request_id: str | None, ts: int | None = None) -> str:
    """Build an `x-signature` header the way MercadoPago does (for `simulate` and tests)."""
    ts_text = str(int(time.time()) if ts is None else ts)
    return f"ts={ts_text},v1={compute_signature(secret, data_id, request_id, ts_text)}"
