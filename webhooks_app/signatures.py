"""MercadoPago's `x-signature` scheme for Webhooks notifications.

The header looks like `ts=1704908010,v1=<hex>`; v1 is HMAC-SHA256 (hex), keyed
with the application's secret, of the manifest
`id:{data.id};request-id:{x-request-id};ts:{ts};`, where `data.id` comes from
the query string and a part whose value is missing is left out.

The case of `data.id` is disputed by MercadoPago itself: its written guide says
to lower-case an alphanumeric id, while its official SDKs sign the id exactly as
received (sdk-python `mercadopago/webhook/validator.py`, `_build_manifest`;
sdk-nodejs `src/utils/webhook/index.ts`, `buildManifest`), so a sender following
one is refused by a verifier following the other. Both forms are accepted.

`MP_WEBHOOK_SECRET` may hold several comma-separated secrets (the newest first):
MercadoPago's "Restablecer" replaces the secret at once, and notifications
already signed with the old one keep arriving for a while.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Sequence

# Both SDKs accept only a run of digits as ts (`ts.isdigit()`, `/^\d+$/`); that also keeps
# out `nan`, `inf` and `-1e309`, which float() reads and every comparison then lets through.
_TS_PATTERN = re.compile(r"[0-9]{1,16}")


class SignatureError(ValueError):
    """The notification's signature is missing, malformed or wrong."""


def parse_secrets(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """`MP_WEBHOOK_SECRET` ("new,old") as a tuple of secrets, the newest first."""
    if not value:
        return ()
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(part.strip() for part in parts if part and part.strip())


def build_manifest(
    data_id: str | None, request_id: str | None, ts: str | None, *, lower: bool = True
) -> str:
    """The string MercadoPago signs; `lower=False` keeps data.id's case, as the SDKs do."""
    if lower and data_id and data_id.isalnum():
        data_id = data_id.lower()
    parts = [("id", data_id), ("request-id", request_id), ("ts", ts)]
    return "".join(f"{name}:{value};" for name, value in parts if value)


def compute_signature(
    secret: str, data_id: str | None, request_id: str | None, ts: str, *, lower: bool = True
) -> str:
    """The hex v1 value for these parts."""
    manifest = build_manifest(data_id, request_id, ts, lower=lower)
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
    secrets: str | Sequence[str],
    header: str | None,
    request_id: str | None,
    data_id: str | None,
    *,
    tolerance: float = 0,
    now: float | None = None,
) -> int:
    """Raise SignatureError unless `header` is MercadoPago's signature of these values.

    `secrets` is one secret, a comma-separated list, or a sequence; the index of
    the one that matched is returned. With `tolerance` (seconds, 0 = off), a
    signature whose `ts` is further than that from `now` is refused too.
    """
    candidates = parse_secrets(secrets)
    if not candidates:
        raise SignatureError("no webhook secret is configured")
    if not header:
        raise SignatureError("missing x-signature header")
    ts, received = parse_signature_header(header)
    seconds = timestamp_seconds(ts)
    received_bytes = received.lower().encode()
    forms = {True, False} if data_id and data_id.isalnum() and not data_id.islower() else {True}
    matched: int | None = None
    # Every secret and both forms are computed and compared in constant time, with no early
    # exit: the time taken must not reveal which secret, or how much of a forgery, matched.
    for index, secret in enumerate(candidates):
        for lower in forms:
            expected = compute_signature(secret, data_id, request_id, ts, lower=lower).encode()
            if hmac.compare_digest(expected, received_bytes) and matched is None:
                matched = index
    if matched is None:
        raise SignatureError("x-signature does not match this notification")
    if tolerance:
        age = abs((time.time() if now is None else now) - seconds)
        if age > tolerance:
            raise SignatureError(f"x-signature timestamp is {age:.0f}s away from now")
    return matched


def timestamp_seconds(ts: str) -> float:
    """`ts` in seconds; MercadoPago sends seconds in some places and milliseconds in others."""
    if not _TS_PATTERN.fullmatch(ts):
        raise SignatureError("x-signature ts must be a whole number (seconds or milliseconds)")
    value = float(ts)
    assert math.isfinite(value)  # at most 16 digits
    # Any real time in milliseconds is above 10^11; in seconds that is the year 5138.
    return value / 1000 if value > 1e11 else value


def sign(
    secret: str | Sequence[str],
    data_id: str | None,
    request_id: str | None,
    ts: int | None = None,
) -> str:
    """Build an `x-signature` header the way MercadoPago does (for `simulate` and tests);
    with several secrets, the first (the newest) signs."""
    first = parse_secrets(secret)[0]
    ts_text = str(int(time.time()) if ts is None else ts)
    return f"ts={ts_text},v1={compute_signature(first, data_id, request_id, ts_text)}"
