"""OMS objects kept as latest versions: the version rule and the validation gate.

Kafka delivers at least once and upstream systems resend and reorder, so "latest" is decided by
the business `sequence` alone: a version replaces the stored one only when its sequence is
strictly higher. That makes applying a message idempotent and commutative, which is what lets
the tables be exact whatever the order and multiplicity of delivery.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.errors import ValidationError

UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class ObjectType:
    """An OMS object type: its Avro record, input topic attribute and id field."""

    name: str
    record: str
    topic_attr: str  # attribute of app.config.Topics
    key_field: str
    required: tuple[str, ...]
    enums: tuple[str, ...]  # enum fields that must hold a known symbol
    non_negative: tuple[str, ...]  # decimal fields that must be >= 0 when present


OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType(
            "Order",
            "Order",
            "orders",
            "orderId",
            required=("eventId", "orderId", "account", "symbol"),
            enums=("side", "orderType", "status"),
            non_negative=("orderQty", "price", "stopPx", "cumQty", "leavesQty", "avgPx"),
        ),
        ObjectType(
            "Execution",
            "Execution",
            "executions",
            "execId",
            required=("eventId", "execId", "orderId", "account", "symbol"),
            enums=("side", "execType"),
            non_negative=("lastQty", "lastPx", "cumQty", "leavesQty", "avgPx"),
        ),
        ObjectType(
            "QuoteRequest",
            "QuoteRequest",
            "quote_requests",
            "quoteReqId",
            required=("eventId", "quoteReqId", "account", "symbol"),
            enums=("side", "status"),
            non_negative=("orderQty",),
        ),
        ObjectType(
            "Quote",
            "Quote",
            "quotes",
            "quoteId",
            required=("eventId", "quoteId", "quoteReqId", "account", "symbol"),
            enums=("status",),
            non_negative=("bidPx", "offerPx", "bidSize", "offerSize"),
        ),
    )
}


def validate_object(object_type: ObjectType, row: Mapping[str, Any]) -> None:
    """Raise ValidationError naming the first broken rule; return None for a valid row."""
    sequence = row.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise ValidationError("sequence is missing or not an integer")
    if sequence < 0:
        raise ValidationError(f"sequence must be >= 0, got {sequence}")
    for name in object_type.required:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{name} is missing or empty")
    for name in object_type.enums:
        value = row.get(name)
        if value is None or value == UNKNOWN:
            raise ValidationError(f"{name} has an unknown value")
    for name in object_type.non_negative:
        value = row.get(name)
        if value is None:
            continue
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValidationError(f"{name} is not a finite decimal")
        if value < 0:
            raise ValidationError(f"{name} must be >= 0, got {value}")


_SEQ = struct.Struct(">q")


def is_newer(stored_sequence: int | None, incoming_sequence: int) -> bool:
    """The version rule: strictly higher sequence wins; equal is a duplicate."""
    return stored_sequence is None or incoming_sequence > stored_sequence


def pack_version(sequence: int, message: bytes) -> bytes:
    """Table value: the sequence (8 bytes) then the original wire message.

    Keeping the original bytes avoids re-encoding on write, and the fixed-size prefix makes the
    staleness check a struct unpack instead of an Avro decode.
    """
    return _SEQ.pack(sequence) + message


def next_version(stored: bytes | None, sequence: int, message: bytes) -> bytes | None:
    """The table value after receiving `message` at `sequence`, or None when it is stale or a
    duplicate (the stored value stays)."""
    if stored is not None and not is_newer(unpack_sequence(stored), sequence):
        return None
    return pack_version(sequence, message)


def unpack_sequence(value: bytes) -> int:
    return _SEQ.unpack_from(value)[0]


def unpack_message(value: bytes) -> bytes:
    return value[_SEQ.size :]
