"""Typed errors raised by the MercadoPago and GoHighLevel API clients.

The caller owns the retry policy, so every error says whether trying again can
help (`retryable`) and, for rate limits, how long to wait (`retry_after`).
Messages never contain credentials: the HTTP layer redacts them before an error
is built (see `webhooks_app.services.http`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "NotFoundError",
    "PermanentApiError",
    "RateLimitedError",
    "TransientApiError",
]


class ApiError(Exception):
    """An API call failed. `retryable` says whether trying again later can help."""

    service: str
    status_code: int | None
    retryable: bool
    retry_after: float | None
    response_body: str | None
    # Set by the subclasses whose kind decides it; the others must be told `retryable=`.
    default_retryable: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status_code: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        response_body: str | None = None,
    ) -> None:
        if retryable is None:
            retryable = self.default_retryable
            if retryable is None:
                raise TypeError(f"{type(self).__name__}() needs retryable=True or False")
        super().__init__(message)
        self.message = message
        self.service = service
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after
        # Already redacted and truncated (<= 2 KB) by the HTTP layer.
        self.response_body = response_body

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__ arguments break Exception's default pickling, and
        # job queues pickle exceptions; rebuild from the instance state instead.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, service={self.service!r}, "
            f"status_code={self.status_code!r}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r})"
        )


class TransientApiError(ApiError):
    """Retryable failure: connection error, timeout, 5xx or 408."""

    default_retryable = True


class RateLimitedError(TransientApiError):
    """HTTP 429; `retry_after` is set when the API sent a Retry-After header."""


class PermanentApiError(ApiError):
    """Not retryable: a 4xx other than 404/408/429, or an unusable 2xx response."""

    default_retryable = False


class NotFoundError(ApiError):
    """HTTP 404. Whether it is retryable depends on the call.

    MercadoPago may notify before a payment is readable, so its GET payment 404
    is retryable; a GoHighLevel 404 (unknown contact) is not.
    """


def _rebuild(cls: type[ApiError], message: str, state: dict[str, Any]) -> ApiError:
    """Unpickle an ApiError without calling its keyword-only __init__."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
