"""Turn pydantic's validation errors into short, human :class:`FieldError` messages with hints.

This runs only for invalid records, so it may take its time; the valid path never gets here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic_core import ErrorDetails

from airflow_provider_klar.models._base import (
    E_CANCELLED_AT,
    E_COGS_KEY,
    E_COUNTRY2,
    E_COUNTRY3,
    E_CURRENCY,
    E_NON_NEGATIVE,
    E_NUMBER,
    E_TAX_RATE,
    E_TIMESTAMP,
    E_VERSION,
    MAX_TIMESTAMP,
)
from airflow_provider_klar.results import FieldError

_NEWEST_BUNDLE_VERSION = "07.2025"


def path_of(loc: Sequence[str | int]) -> str:
    """Return the dotted path of a pydantic ``loc``: ``lineItems.0.taxes.0.taxRate``."""
    return ".".join(str(part) for part in loc)


def describe(value: Any) -> str:
    """Return ``value`` as a reader sees it in JSON, with its JSON type: ``the string '17%'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, tuple):  # only from Python (records=): name it, "a list" would read as valid
        return f"a tuple of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return f"{value!r} (a {type(value).__name__})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _num(value: Any) -> str:
    # Decimal('2.5') reads as 2.5 in a message; ints and floats as Python prints them.
    return str(value) if isinstance(value, Decimal) else repr(value)


def _parses_as_number(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _number_message(value: Any, what: str = "a number") -> str:
    if _is_number(value) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    hint = f" (send {value.strip()} without quotes)" if _parses_as_number(value) else ""
    return f"must be {what}, got {describe(value)}{hint}"


def _timestamp_message(value: Any, *, cancelled: bool = False) -> str:
    if isinstance(value, datetime):
        hint = f" (send {int(value.timestamp())})" if value.tzinfo is not None else " with a time zone"
        return f"must be a Unix timestamp in seconds (a number), got a datetime: convert it{hint}"
    if not _is_number(value) or not math.isfinite(value):
        return _number_message(value, "a Unix timestamp in seconds (a number)")
    if cancelled and value == 0:
        return (
            "must be a Unix timestamp > 0; leave the field out when the order is not cancelled "
            "(Klar rejects 0)"
        )
    if value < 0:
        return f"({_num(value)}) must not be negative: send a Unix timestamp in seconds"
    if 1e12 <= value < 1e15:
        return f"({_num(value)}) looks like milliseconds: send Unix seconds ({int(value // 1000)})"
    if 1e15 <= value < 1e18:
        return f"({_num(value)}) looks like microseconds: send Unix seconds ({int(value // 1_000_000)})"
    return f"({_num(value)}) is not a Unix timestamp in seconds (expected 0 to {MAX_TIMESTAMP - 1})"


def _tax_rate_message(value: Any) -> str:
    if isinstance(value, str) and value.strip().endswith("%"):
        return f"must be a number (a fraction such as 0.19), got {describe(value)}"
    if not _is_number(value) or not math.isfinite(value):
        return _number_message(value, "a number (a fraction such as 0.19)")
    if value < 0:
        return f"({_num(value)}) has to be 0 or positive"
    return f"{_num(value)} looks like a percentage, send {_num(round(value / 100, 6))}"


def _message(error: ErrorDetails, version: str) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == E_NUMBER:
        return _number_message(value)
    if kind == E_NON_NEGATIVE:
        if _is_number(value) and math.isfinite(value):
            return f"({_num(value)}) must not be negative"
        return _number_message(value)
    if kind == E_TAX_RATE:
        return _tax_rate_message(value)
    if kind in (E_TIMESTAMP, E_CANCELLED_AT):
        return _timestamp_message(value, cancelled=kind == E_CANCELLED_AT)
    if kind == E_CURRENCY:
        return f"({describe(value)}) is not an ISO 4217 currency code (three capital letters such as 'EUR')"
    if kind == E_COUNTRY2:
        return f"({describe(value)}) is not an ISO 3166-1 alpha-2 country code (such as 'DE')"
    if kind == E_COUNTRY3:
        return f"({describe(value)}) is not an ISO 3166-1 alpha-3 country code (such as 'DEU')"
    if kind == E_VERSION:
        return (
            f"bundledProducts needs API version {_NEWEST_BUNDLE_VERSION} or later; "
            f"this record is validated for {version}"
        )
    if kind == E_COGS_KEY:
        return "cogs need lineItemId or sku: send at least one of them"
    if kind == "missing":
        return "is required"
    if kind == "string_type":
        hint = f' (send "{value}")' if _is_number(value) else ""
        return f"must be a string, got {describe(value)}{hint}"
    if kind == "bool_type":
        return f"must be true or false, got {describe(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {describe(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be an object, got {describe(value)}"
    return f"{error['msg']}, got {describe(value)}"


def field_errors(
    errors: Iterable[ErrorDetails], version: str, aliases: Mapping[str, str] | None = None
) -> tuple[FieldError, ...]:
    """Return one :class:`FieldError` per pydantic error, with camelCase dotted paths.

    :param errors: ``ValidationError.errors()``.
    :param version: The API version validated for, named in version hints.
    :param aliases: JSON names by attribute name: pydantic names a field in ``loc`` as the input did,
        so a snake_case input would otherwise get snake_case paths.
    """
    result = []
    for error in errors:
        loc = error["loc"]
        if aliases:
            loc = tuple(aliases.get(part, part) if isinstance(part, str) else part for part in loc)
        path = path_of(loc)
        if error["type"] == E_COGS_KEY:
            path = "lineItemId"
        value = None if error["type"] in ("missing", E_COGS_KEY) else error.get("input")
        result.append(FieldError(path=path, message=_message(error, version), value=value))
    return tuple(result)
