"""Typed API clients for MercadoPago and GoHighLevel, and the errors they raise."""

from .errors import (
    ApiError,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
)
from .gohighlevel import GoHighLevelClient
from .mercadopago import MercadoPagoClient, format_mp_datetime, parse_mp_datetime

__all__ = [
    "ApiError",
    "GoHighLevelClient",
    "MercadoPagoClient",
    "NotFoundError",
    "PermanentApiError",
    "RateLimitedError",
    "TransientApiError",
    "format_mp_datetime",
    "parse_mp_datetime",
]
