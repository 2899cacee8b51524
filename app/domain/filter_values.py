"""Filter values: JSON in, exactly-typed Python values out, and back to canonical JSON.

Row values are typed as described in :mod:`app.domain.fields`, so a filter value is converted
once, at compile time, to the same Python type; the predicate then compares like with like and a
Decimal compares exactly (``"100.10"`` equals ``Decimal("100.1")``).

Accepted JSON per data type:

- String, Enum: a string (an Enum value must be one of the field's symbols, exact case).
- Integer, Long: an integer, an integral float (``100.0``) or a string of digits; within the
  32-/64-bit signed range.
- Decimal: a string (``"100.10"``, ``"1e3"``), an integer, or a float. A float is converted
  through ``str()`` so ``100.1`` means ``Decimal("100.1")`` (its shortest repr), never the binary
  expansion. Clients should send strings; floats are tolerated for AG Grid number filters.
  NaN/Infinity are refused, and so are magnitudes beyond 1e±100 (no position is that large).
- Boolean: ``true``/``false`` only.
- Timestamp: an ISO-8601 string (``Z`` or an offset; without one it is read as UTC; a bare date
  means midnight UTC) or integer epoch milliseconds; always becomes a timezone-aware UTC datetime.
- Date: a ``"YYYY-MM-DD"`` string.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from app.domain.fields import FieldSpec
from app.domain.filter_errors import FilterLimits, echo, invalid

_INT_RANGES = {"Integer": (-(2**31), 2**31 - 1), "Long": (-(2**63), 2**63 - 1)}
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,6})?")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DECIMAL_MAX_ADJUSTED = 100
_MAX_INT_BITS = 400
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIMESTAMP_TEXT_MAX = 64


def coerce_value(field: FieldSpec, raw: Any, path: str, limits: FilterLimits) -> Any:
    """The Python value a row of ``field`` would hold for the JSON ``raw``; FilterError if none."""
    kind = field.data_type
    if isinstance(raw, str) and len(raw) > limits.max_string_length:
        raise invalid(f"string longer than {limits.max_string_length} characters", path)
    if kind == "String":
        if not isinstance(raw, str):
            raise invalid(f"{field.name} expects a string, got {echo(raw)}", path)
        return raw
    if kind == "Enum":
        return _enum(field, raw, path)
    if kind in _INT_RANGES:
        return _integer(kind, raw, path)
    if kind == "Decimal":
        return decimal_value(raw, path)
    if kind == "Boolean":
        if not isinstance(raw, bool):
            raise invalid(f"{field.name} expects true or false, got {echo(raw)}", path)
        return raw
    if kind == "Timestamp":
        return timestamp_value(raw, path)
    if kind == "Date":
        return date_value(raw, path)
    raise invalid(f"{field.name} has type {kind}, which cannot be filtered", path)


def _enum(field: FieldSpec, raw: Any, path: str) -> str:
    if not isinstance(raw, str):
        raise invalid(f"{field.name} expects one of its enum symbols, got {echo(raw)}", path)
    if field.values is not None and raw not in field.values:
        raise invalid(f"{echo(raw)} is not a value of {field.name}", path)
    return raw


def _integer(kind: str, raw: Any, path: str) -> int:
    integral_float = isinstance(raw, float) and math.isfinite(raw) and raw.is_integer()
    digits = isinstance(raw, str) and _INT_TEXT.fullmatch(raw) is not None
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif integral_float or digits:
        value = int(raw)
    if value is None:
        raise invalid(f"expected an integer, got {echo(raw)}", path)
    low, high = _INT_RANGES[kind]
    if not low <= value <= high:
        raise invalid(f"{echo(raw)} is out of range for {kind}", path)
    return value


def decimal_value(raw: Any, path: str) -> Decimal:
    """An exact Decimal from a JSON string, integer or float (see the module doc)."""
    value: Decimal | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = Decimal(raw) if raw.bit_length() <= _MAX_INT_BITS else None
    elif isinstance(raw, float):
        value = Decimal(str(raw)) if math.isfinite(raw) else None
    elif isinstance(raw, str) and _DECIMAL_TEXT.fullmatch(raw):
        try:
            value = Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
            value = None
    if value is None:
        raise invalid(f"expected a decimal number (preferably as a string), got {echo(raw)}", path)
    if value.is_zero():
        return Decimal(0)
    if abs(value.adjusted()) > _DECIMAL_MAX_ADJUSTED:
        raise invalid(f"{echo(raw)} is out of range for a decimal filter value", path)
    return value


def timestamp_value(raw: Any, path: str) -> dt.datetime:
    """A timezone-aware UTC datetime from ISO-8601 text or integer epoch milliseconds."""
    try:
        if isinstance(raw, bool):
            pass
        elif isinstance(raw, int) or (
            isinstance(raw, float) and math.isfinite(raw) and raw.is_integer()
        ):
            return _EPOCH + dt.timedelta(milliseconds=int(raw))
        elif isinstance(raw, str) and len(raw) <= _TIMESTAMP_TEXT_MAX:
            parsed = dt.datetime.fromisoformat(raw)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise invalid(f"expected an ISO-8601 timestamp or epoch milliseconds, got {echo(raw)}", path)


def date_value(raw: Any, path: str) -> dt.date:
    """A date from ``"YYYY-MM-DD"`` text."""
    if isinstance(raw, str) and _DATE_TEXT.fullmatch(raw):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            pass
    raise invalid(f"expected a date as YYYY-MM-DD, got {echo(raw)}", path)


def canonical_json(value: Any) -> Any:
    """The canonical JSON rendering of a coerced value, used in a compiled filter's ``spec``.

    Equal values render equally (``Decimal("100.10")`` and ``Decimal("100.1")`` both give
    ``"100.1"``), so two filters with the same meaning have the same canonical form.
    """
    if isinstance(value, Decimal):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC)
        spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
        return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
