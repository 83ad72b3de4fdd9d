"""Conversions of MercadoPago's JSON values for the handlers' columns."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def decimal_or_none(value: Any) -> Decimal | None:
    """A JSON number as a Decimal; None for null or anything else."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def int_or_none(value: Any) -> int | None:
    """A JSON number (or numeric string) as an int; None for null, a boolean or anything else."""
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def bool_or_none(value: Any) -> bool | None:
    """A JSON boolean; None for null or anything else."""
    return value if isinstance(value, bool) else None
