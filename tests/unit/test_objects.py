"""The version rule and the validation gate of OMS objects."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.objects import (
    OBJECT_TYPES,
    next_version,
    unpack_message,
    unpack_sequence,
    validate_object,
)
from app.errors import ValidationError

events = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C", "D"]), st.integers(0, 30), st.binary(max_size=8)),
    max_size=60,
)


def apply_all(stream: list[tuple[str, int, bytes]]) -> dict[str, bytes]:
    table: dict[str, bytes] = {}
    for key, seq, payload in stream:
        updated = next_version(table.get(key), seq, payload)
        if updated is not None:
            table[key] = updated
    return table


@given(events, st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_order_and_duplication_gives_max_sequence_per_id(stream, rnd, dup) -> None:
    # Payload is a function of (key, seq) in a real OMS: same version, same bytes.
    stream = [(k, s, f"{k}{s}".encode()) for k, s, _ in stream]
    extra = [rnd.choice(stream) for _ in range(dup * len(stream) // 2)] if stream else []
    delivered = stream + extra
    rnd.shuffle(delivered)
    table = apply_all(delivered)
    expected: dict[str, int] = {}
    for k, s, _ in stream:
        expected[k] = max(expected.get(k, -1), s)
    assert {k: unpack_sequence(v) for k, v in table.items()} == expected
    assert all(unpack_message(v) == f"{k}{expected[k]}".encode() for k, v in table.items())


def test_equal_sequence_is_a_duplicate_and_lower_is_stale() -> None:
    stored = next_version(None, 5, b"v5")
    assert next_version(stored, 5, b"other") is None
    assert next_version(stored, 4, b"v4") is None
    assert unpack_message(next_version(stored, 6, b"v6")) == b"v6"


def valid_order() -> dict:
    return {
        "eventId": "E1", "sequence": 1, "orderId": "O1", "account": "A", "symbol": "S",
        "side": "BUY", "orderType": "LIMIT", "status": "NEW", "orderQty": Decimal("10"),
        "price": None, "stopPx": None, "cumQty": Decimal(0), "leavesQty": Decimal(10),
        "avgPx": Decimal(0),
    }


def test_valid_order_passes() -> None:
    validate_object(OBJECT_TYPES["Order"], valid_order())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"orderId": ""}, "orderId"),
        ({"account": None}, "account"),
        ({"side": "UNKNOWN"}, "side"),
        ({"status": "UNKNOWN"}, "status"),
        ({"orderQty": Decimal("-1")}, "orderQty"),
        ({"price": Decimal("NaN")}, "price"),
        ({"sequence": None}, "sequence"),
        ({"sequence": -3}, "sequence"),
    ],
)
def test_validation_gate_names_the_broken_field(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_object(OBJECT_TYPES["Order"], {**valid_order(), **change})
