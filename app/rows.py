"""Rows on the wire: one JSON encoding for REST and WebSocket output.

Decimals leave as strings (exactness: a JSON number would be read as a binary float by most
clients), timestamps as ISO-8601 UTC with milliseconds, dates as ISO dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from app.domain.decimals import decimal_str


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def iso_millis(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def json_value(value: Any) -> Any:
    """A JSON-ready scalar for one row value."""
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, dt.datetime):
        return iso_millis(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with every value made JSON-ready (Decimal -> str, datetime -> ISO)."""
    return {k: json_value(v) for k, v in row.items()}


def dumps(value: Any) -> bytes:
    """orjson with the project's conventions for Decimal and datetimes."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_UTC_Z)
