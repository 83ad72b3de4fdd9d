"""Shared HTTP plumbing for the API clients.

One place owns: the `requests.Session` (keep-alive, no hidden retries, the
environment's proxy and CA-bundle settings read once), the timeout, the auth
header, and the mapping of responses and `requests` exceptions to the typed
errors in `webhooks_app.services.errors`. Both clients go through
`ApiHttpClient.request_json`.

Secrets never reach an error: the token is sent through a `requests` auth
object (not kept in any header mapping we log), and every message or body
kept on an error is redacted first. Errors are raised outside the `except`
block so no `requests` exception (whose text can hold URLs) is chained to them.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from ..tracing import client_span, record_response_status
from .errors import (
    ApiError,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
)

logger = logging.getLogger(__name__)

USER_AGENT = (
    "webhooks_app/1.0 (MercadoPago-GoHighLevel webhook reliability service) "
    f"python-requests/{requests.__version__}"
)
DEFAULT_TIMEOUT = 10.0
# A TCP connect that takes longer than this is a dead host, not a slow API:
# fail fast so the worker is freed and the caller can schedule a retry.
MAX_CONNECT_TIMEOUT = 5.0
MAX_BODY_BYTES = 2048
MAX_API_MESSAGE_CHARS = 500
MAX_EXCEPTION_TEXT_CHARS = 300
REDACTED = "***"
MIN_SECRET_CHARS = 8

_TRUNCATION_MARKER = "...[truncated]"
# Generic patterns catch credentials we were not told about (e.g. a token an
# API echoes back, or an `access_token` query parameter in an exception URL).
_BEARER_RE = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;)}\]]+")
_QUERY_SECRET_RE = re.compile(r"(?i)\b((?:access_token|token|api_key|apikey)=)[^&\s'\",;)}\]]+")
_BASIC_RE = re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/=_-]+")
# A run that could be base64 (standard or URL-safe), long enough to carry a token.
_BASE64_RUN_RE = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


class BearerAuth(AuthBase):
    """Adds `Authorization: Bearer <token>` to each request.

    Passing the token as `auth=` (instead of a default header) keeps it out of
    the session's header mapping, stops `~/.netrc` from overriding it, and means
    `requests` does not re-apply it when a redirect leaves the host.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return f"BearerAuth({REDACTED})"


def build_session(base_url: str | None = None) -> requests.Session:
    """A Session whose adapters never retry: the caller owns the retry policy.

    This spells out what requests does by default (a zero-retry urllib3
    `Retry`, read errors re-raised as-is) so an unexpected retry, which could
    double a POST or hide a rate limit, cannot creep in.

    With `base_url` (every request of the session goes to that host), the
    environment's settings for it are read once, here, and fixed on the session,
    instead of on every request (see `environment_settings`).
    """
    session = requests.Session()
    no_retries = Retry(total=0, read=False, redirect=False, status=0, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=no_retries)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if base_url is not None:
        session.proxies, session.verify = environment_settings(base_url)
        # Otherwise `requests` reads os.environ again on every request (about a
        # quarter of its CPU per call). The only other thing trust_env does is
        # ~/.netrc, which never applies here: every request carries its own auth.
        session.trust_env = False
    return session


def environment_settings(url: str) -> tuple[dict[str, str], bool | str]:
    """The proxies and CA bundle `requests` would take from the environment for `url`.

    Exactly what `Session.merge_environment_settings` does per request:
    HTTP(S)_PROXY / ALL_PROXY unless NO_PROXY matches the URL's host (which is
    all a proxy decision depends on), and REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE.
    """
    proxies = requests.utils.get_environ_proxies(url)
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return proxies, verify


def normalize_base_url(base_url: str) -> str:
    """Validate an http(s) base URL and drop trailing slashes (paths start with '/')."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError("base_url must be a non-empty http(s) URL")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def build_timeout(timeout: float) -> tuple[float, float]:
    """Turn the configured timeout into requests' (connect, read) tuple."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    seconds = float(timeout)
    return (min(seconds, MAX_CONNECT_TIMEOUT), seconds)


def path_segment(value: str | int, name: str) -> str:
    """Quote an id for use as one URL path segment.

    Ids can come from untrusted webhook payloads; quoting (including '/') keeps
    a crafted id from reaching another endpoint with our credentials.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{name} must be a string or an integer, got {type(value).__name__}")
    text = str(value).strip()
    if not text or text in (".", ".."):
        raise ValueError(f"{name} must be a non-empty id, got {value!r}")
    return quote(text, safe="")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def truncate_text(text: str, limit: int = MAX_BODY_BYTES) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes, marking the cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    head = data[: limit - len(_TRUNCATION_MARKER)].decode("utf-8", errors="ignore")
    return head + _TRUNCATION_MARKER


def extract_api_message(payload: Any) -> str | None:
    """The API's own explanation from a JSON error body, if there is one.

    MercadoPago: {"message", "error", "status", "cause": [{"code", "description"}]}.
    GoHighLevel: {"statusCode", "message": str | [str], "error", "traceId"?}.
    """
    if not isinstance(payload, Mapping):
        return None
    raw_message = payload.get("message")
    if isinstance(raw_message, list):
        message = "; ".join(str(item) for item in raw_message if item not in (None, ""))
    elif raw_message in (None, ""):
        message = ""
    else:
        message = str(raw_message)
    error = payload.get("error")
    text = message or (str(error) if error else "")
    if message and isinstance(error, str) and error and error.lower() != message.lower():
        text += f" ({error})"
    causes = payload.get("cause")
    if isinstance(causes, Mapping):
        causes = [causes]
    if isinstance(causes, list):
        notes = []
        for cause in causes:
            if not isinstance(cause, Mapping):
                continue
            code, description = cause.get("code"), cause.get("description")
            if description and description != message:
                notes.append(
                    f"{description} (code {code})" if code is not None else str(description)
                )
            elif code is not None:
                notes.append(f"code {code}")
        if notes:
            text += f" [cause: {'; '.join(notes)}]"
    trace_id = payload.get("traceId")
    if trace_id:
        text += f" [trace id {trace_id}]"
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_API_MESSAGE_CHARS:
        text = text[: MAX_API_MESSAGE_CHARS - 3] + "..."
    return text


def secret_variants(token: str) -> tuple[str, ...]:
    """The plain forms a token can take in a message (matched case-insensitively): as
    given, stripped, URL-encoded (`quote` and `quote_plus`); none shorter than
    MIN_SECRET_CHARS."""
    stripped = token.strip()
    forms = {token, stripped, quote(stripped, safe=""), quote_plus(stripped)}
    return tuple(form for form in forms if len(form) >= MIN_SECRET_CHARS)


def _base64_decodings(run: str) -> list[bytes]:
    """`run` decoded as standard and URL-safe base64 (each padded as needed), where valid."""
    padded = run.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    decodings = []
    for altchars in (b"+/", b"-_"):
        try:
            decodings.append(base64.b64decode(padded, altchars=altchars, validate=True))
        except (binascii.Error, ValueError):
            continue
    return decodings


class ApiHttpClient:
    """JSON-over-HTTP calls to one API, with errors mapped to `ApiError` types."""

    def __init__(
        self,
        *,
        service: str,
        base_url: str,
        token: str,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        headers: Mapping[str, str] | None = None,
        on_response: Callable[[requests.Response], None] | None = None,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"{service}: an API token is required")
        self.service = service
        self.base_url = normalize_base_url(base_url)
        self.timeout = build_timeout(timeout)
        self._auth = BearerAuth(token.strip())
        self._secrets = secret_variants(token)
        stripped = token.strip().encode()
        self._secret_bytes = (stripped,) if len(stripped) >= MIN_SECRET_CHARS else ()
        # One pass over the text for every form; longest first, so no copy is left half-done.
        self._secrets_re = re.compile(
            "|".join(re.escape(secret) for secret in sorted(self._secrets, key=len, reverse=True)),
            re.IGNORECASE,
        )
        # Headers go on each request, not on the session: an injected session
        # may be shared with other code and must not be changed.
        self._headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        # Called with every HTTP response, error or not (e.g. to read rate-limit headers).
        self._on_response = on_response
        self._owns_session = session is None
        # An injected session is used as it is (it may be shared with other code).
        self.session = session if session is not None else build_session(self.base_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(service={self.service!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self.session.close()

    # -- requests ---------------------------------------------------------

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        not_found_retryable: bool = False,
    ) -> Any:
        """Send one request and return the decoded JSON body (None when empty).

        Raises a `TransientApiError`, `RateLimitedError`, `NotFoundError` or
        `PermanentApiError`; `not_found_retryable` sets a 404's `retryable`.
        The call is a span of the current trace when tracing is on.
        """
        with client_span(self.service, method, path):
            return self._request_json(
                method,
                path,
                params=params,
                json_body=json_body,
                not_found_retryable=not_found_retryable,
            )

    def _request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json_body: Any,
        not_found_retryable: bool,
    ) -> Any:
        url = self.base_url + path
        started = time.monotonic()
        error: ApiError | None = None
        response: requests.Response | None = None
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=self._headers,
                auth=self._auth,
                timeout=self.timeout,
                # A redirect means a wrong base_url; following it would turn a
                # POST into a GET, so it is reported instead.
                allow_redirects=False,
            )
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            error = self._transport_error(method, path, "timed out", exc, retryable=True)
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            error = self._transport_error(method, path, "connection failed", exc, retryable=True)
        except requests.RequestException as exc:
            # InvalidURL, InvalidHeader and friends: retrying cannot fix them.
            error = self._transport_error(method, path, "request failed", exc, retryable=False)
        elapsed_ms = (time.monotonic() - started) * 1000
        if error is not None:
            logger.debug("%s %s %s failed after %.0f ms", self.service, method, path, elapsed_ms)
            raise error  # outside `except`: nothing chained, see module docstring
        assert response is not None
        record_response_status(response.status_code)
        logger.debug(
            "%s %s %s -> %s in %.0f ms",
            self.service,
            method,
            path,
            response.status_code,
            elapsed_ms,
        )
        if self._on_response is not None:
            self._on_response(response)
        if 200 <= response.status_code < 300:
            return self._decode_success(method, path, response)
        raise self._error_for_response(
            method, path, response, not_found_retryable=not_found_retryable
        )

    def unexpected_response(
        self,
        method: str,
        path: str,
        detail: str,
        payload: Any = None,
        status_code: int = 200,
    ) -> PermanentApiError:
        """Error for a 2xx whose JSON is not shaped as documented."""
        body = None if payload is None else self.redact(truncate_text(repr(payload)))
        return PermanentApiError(
            self._describe(method, path, f"unexpected response: {detail}"),
            service=self.service,
            status_code=status_code,
            response_body=body,
        )

    def expect_object(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        """Return `payload` if it is a JSON object, else raise PermanentApiError."""
        if not isinstance(payload, dict):
            raise self.unexpected_response(
                method,
                path,
                f"expected a JSON object, got {type(payload).__name__}",
                payload,
            )
        return payload

    # -- helpers ----------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove known secrets and anything that looks like a credential.

        The token is found in any case (an API may echo it lower- or upper-cased),
        URL-encoded, and base64-encoded alone or inside `user:token` (Basic auth).
        """
        # A very short "token" (a test placeholder) would shred every word it occurs
        # in; real tokens are long, and the patterns still apply.
        if self._secrets:
            text = self._secrets_re.sub(REDACTED, text)
            text = _BASE64_RUN_RE.sub(self._redact_base64, text)
        text = _BEARER_RE.sub(rf"\1{REDACTED}", text)
        text = _BASIC_RE.sub(rf"\1{REDACTED}", text)
        return _QUERY_SECRET_RE.sub(rf"\1{REDACTED}", text)

    def _redact_base64(self, match: re.Match[str]) -> str:
        run = match.group(0)
        for decoded in _base64_decodings(run):
            lowered = decoded.lower()
            if any(secret.lower() in lowered for secret in self._secret_bytes):  # any case
                return REDACTED
        return run

    def _describe(self, method: str, path: str, what: str) -> str:
        return self.redact(f"{self.service} {method} {path} failed: {what}")

    def _transport_error(
        self, method: str, path: str, what: str, exc: Exception, *, retryable: bool
    ) -> ApiError:
        detail = self.redact(str(exc))
        if len(detail) > MAX_EXCEPTION_TEXT_CHARS:
            detail = detail[: MAX_EXCEPTION_TEXT_CHARS - 3] + "..."
        message = self._describe(method, path, f"{what} ({type(exc).__name__}: {detail})")
        if retryable:
            return TransientApiError(message, service=self.service)
        return PermanentApiError(message, service=self.service)

    def _body_text(self, response: requests.Response) -> str | None:
        text = response.text  # requests decodes with errors="replace": never raises
        return self.redact(truncate_text(text)) if text else None

    def _decode_success(self, method: str, path: str, response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            pass  # raised below, unchained: the decode error carries the raw body
        content_type = response.headers.get("Content-Type", "unknown content type")
        raise PermanentApiError(
            self._describe(
                method,
                path,
                f"HTTP {response.status_code} response is not valid JSON ({content_type})",
            ),
            service=self.service,
            status_code=response.status_code,
            response_body=self._body_text(response),
        )

    def _error_for_response(
        self,
        method: str,
        path: str,
        response: requests.Response,
        *,
        not_found_retryable: bool,
    ) -> ApiError:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        what = f"HTTP {status} {response.reason or ''}".rstrip()
        api_message = extract_api_message(payload)
        if api_message:
            what += f": {api_message}"
        if 300 <= status < 400:
            location = urlsplit(response.headers.get("Location", ""))
            target = urlunsplit((location.scheme, location.netloc, location.path, "", ""))
            what += (
                f" (unexpected redirect to {target or 'an unknown location'}; check the base URL)"
            )
        request_id = response.headers.get("X-Request-Id")
        if request_id:
            what += f" [request id {request_id}]"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            what += f"; retry after {retry_after:.0f}s"

        error_class: type[ApiError]
        retryable: bool
        if status == 429:
            error_class, retryable = RateLimitedError, True
        elif status == 404:
            error_class, retryable = NotFoundError, not_found_retryable
        elif status == 408 or status >= 500:
            error_class, retryable = TransientApiError, True
        else:  # other 4xx, and 1xx/3xx which these JSON APIs never send on purpose
            error_class, retryable = PermanentApiError, False
        return error_class(
            self._describe(method, path, what),
            service=self.service,
            status_code=status,
            retryable=retryable,
            retry_after=retry_after,
            response_body=self._body_text(response),
        )


class ApiClient:
    """What both API clients share: their `ApiHttpClient`, exposed read-only, and closing.

    A subclass sets `self._http` in its `__init__`.
    """

    _http: ApiHttpClient

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """Base URL without a trailing slash."""
        return self._http.base_url

    @property
    def timeout(self) -> tuple[float, float]:
        """The (connect, read) timeout used on every call."""
        return self._http.timeout

    @property
    def session(self) -> requests.Session:
        """The keep-alive session shared by every call."""
        return self._http.session

    def close(self) -> None:
        """Close the session if this client created it."""
        self._http.close()


# -- settings from the Flask config mapping ---------------------------------


def config_required(config: Mapping[str, Any], name: str, purpose: str) -> str:
    """A required, non-blank string setting; ValueError naming it otherwise."""
    value = config.get(name)
    if value is None or not str(value).strip():
        raise ValueError(f"{name} is not set: it is required for {purpose}")
    # Secrets read from files or env often carry a trailing newline.
    return str(value).strip()


def config_base_url(config: Mapping[str, Any], name: str, default: str) -> str:
    """An optional base URL setting; blank means the default."""
    value = config.get(name)
    return default if value is None or not str(value).strip() else str(value).strip()


def config_timeout(config: Mapping[str, Any], name: str = "HTTP_TIMEOUT") -> float:
    """The timeout setting in seconds (default 10), accepting strings from the environment."""
    value = config.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan  # reported below with the setting's name
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds
