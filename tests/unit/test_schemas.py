"""The checked-in Avro schemas: they parse, are documented, round-trip and evolve safely."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, date, datetime
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.metadata import (
    DECIMAL_PRECISION,
    DECIMAL_QUANTUM,
    DECIMAL_SCALE,
    load_manifest,
    load_schema,
    schemas_dir,
)

SCHEMA_FILES = sorted(schemas_dir().glob("*.avsc"))
SCHEMA_NAMES = [path.stem for path in SCHEMA_FILES]
T0 = datetime(2024, 3, 14, 9, 30, 15, 123000, tzinfo=UTC)
D = Decimal
# The largest magnitude decimal(38, 8) holds.
LARGEST = D("9" * (DECIMAL_PRECISION - DECIMAL_SCALE) + "." + "9" * DECIMAL_SCALE)

COMMON = {
    "eventId": "evt-7f3a",
    "sequence": 3,
    "eventTime": T0,
    "correlationId": "corr-1",
    "causationId": None,
    "source": "oms-sim",
}
LOT_RELIEF = {
    "lotId": "lot-1",
    "tradeId": "T-1",
    "quantity": D("40"),
    "costPrice": D("99.5"),
    "realizedPnl": D("70.00000001"),
}
APPLIED = {
    **COMMON,
    "positionKey": "ACC-1:AAPL",
    "account": "ACC-1",
    "symbol": "AAPL",
    "tradeId": "T-9",
    "version": 12,
    "side": "SELL",
    "quantity": D("50"),
    "price": D("101.25"),
    "tradeTime": T0,
    "effectiveDate": date(2024, 3, 14),
    "lotMethod": "HIFO",
    "lotsRelieved": [LOT_RELIEF, {**LOT_RELIEF, "lotId": "lot-2", "quantity": D("10")}],
    "openedLotId": None,
    "openedQuantity": None,
    "quantityAfter": D("-0.00000001"),
    "lotCountAfter": 1,
    "realizedPnl": D("87.50000001"),
    "realizedPnlAfter": D("1234.56789012"),
    "status": "RECONCILED",
}

# One realistic record per schema; the round-trip test fails if a schema gains a required field
# these samples do not cover.
SAMPLES: dict[str, dict[str, Any]] = {
    "Order": {
        **COMMON,
        "orderId": "ORD-1",
        "clOrdId": "CL-1",
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": "SELL_SHORT",
        "orderType": "STOP_LIMIT",
        "timeInForce": "GTC",
        "orderQty": D("1000"),
        "price": D("101.25"),
        "stopPx": D("101.00000001"),
        "status": "PARTIALLY_FILLED",
        "cumQty": D("400"),
        "leavesQty": D("600"),
        "avgPx": D("101.2612345"),
        "trader": "jdoe",
        "desk": "EQ-US",
        "transactTime": T0,
    },
    "Execution": {
        **COMMON,
        "execId": "EX-1",
        "orderId": "ORD-1",
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": "BUY",
        "execType": "TRADE",
        "lastQty": D("0.00000001"),
        "lastPx": D("101.25"),
        "cumQty": D("400.00000001"),
        "leavesQty": D("599.99999999"),
        "avgPx": D("101.25"),
        "venue": "XNAS",
        "transactTime": T0,
    },
    "QuoteRequest": {
        **COMMON,
        "quoteReqId": "QR-1",
        "account": "ACC-1",
        "symbol": "US912828XG55",
        "side": "BUY",
        "orderQty": D("5000000"),
        "status": "QUOTED",
        "trader": "jdoe",
        "desk": "RATES",
        "expireTime": T0,
    },
    "Quote": {
        **COMMON,
        "quoteId": "Q-1",
        "quoteReqId": "QR-1",
        "account": "ACC-1",
        "symbol": "US912828XG55",
        "bidPx": D("99.984375"),
        "offerPx": None,
        "bidSize": D("5000000"),
        "offerSize": None,
        "status": "ACTIVE",
        "validUntil": T0,
    },
    "Trade": {
        **COMMON,
        "tradeId": "T-9",
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": D("100"),
        "price": D("101.25"),
        "tradeTime": T0,
        "effectiveDate": date(2024, 3, 13),
        "contractId": "C-77",
    },
    "MarketPrice": {**COMMON, "symbol": "AAPL", "price": D("101.25"), "asOf": T0},
    "ContractRule": {
        **COMMON,
        "positionKey": "ACC-1:AAPL",
        "lotMethod": "LIFO",
        "effectiveFrom": date(2024, 1, 2),
    },
    "TradeApplied": {**APPLIED, "classification": "FORWARD_DATED"},
    "ProvisionalTradeApplied": {
        **APPLIED,
        "lastAppliedTradeId": "T-8",
        "openedLotId": "lot-3",
        "openedQuantity": D("-10"),
        "status": "PROVISIONAL",
    },
    "HistoricalPositionCorrected": {
        **COMMON,
        "positionKey": "ACC-1:AAPL",
        "account": "ACC-1",
        "symbol": "AAPL",
        "tradeId": "T-5",
        "previousVersion": 12,
        "newVersion": 13,
        "quantityBefore": D("100"),
        "quantityAfter": D("100"),
        "quantityDelta": D("0"),
        "lotCountBefore": 2,
        "lotCountAfter": 3,
        "lotCountDelta": 1,
        "realizedPnlBefore": D("50"),
        "realizedPnlAfter": D("49.99999999"),
        "realizedPnlDelta": D("-0.00000001"),
        "exposureBefore": D("10125"),
        "exposureAfter": D("10125"),
        "exposureDelta": D("0"),
        "replayedTradeCount": 7,
        "lotMethod": "FIFO",
        "status": "RECONCILED",
    },
    "Position": {
        "positionKey": "ACC-1:AAPL",
        "account": "ACC-1",
        "symbol": "AAPL",
        "quantity": D("-250.5"),
        "lotCount": 3,
        "realizedPnl": D("1234.56789012"),
        "unrealizedPnl": D("-0.00000001"),
        "exposure": D("-25363.125"),
        "lastPrice": D("101.25"),
        "costBasis": D("-25363.12499999"),
        "lotMethod": "FIFO",
        "status": "PROVISIONAL",
        "version": 42,
        "updatedTime": T0,
    },
}


def encode(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def decode(data: bytes, writer: Any, reader: Any | None = None) -> dict[str, Any]:
    parsed_reader = fastavro.parse_schema(reader) if reader is not None else None
    return fastavro.schemaless_reader(
        io.BytesIO(data), fastavro.parse_schema(writer), parsed_reader
    )


def walk_types(node: Any):
    """Yield every type node (dicts and names) inside a schema."""
    if isinstance(node, list):
        for branch in node:
            yield from walk_types(branch)
    elif isinstance(node, dict):
        yield node
        for field in node.get("fields", ()):
            yield from walk_types(field["type"])
        for key in ("items", "values"):
            if key in node:
                yield from walk_types(node[key])
        if isinstance(node.get("type"), (dict, list)):
            yield from walk_types(node["type"])
    else:
        yield node


def records_of(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        node
        for node in walk_types(schema)
        if isinstance(node, dict) and node.get("type") == "record"
    ]


def decimal_schema(name: str = "Money") -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "fields": [
            {
                "name": "amount",
                "type": {
                    "type": "bytes",
                    "logicalType": "decimal",
                    "precision": DECIMAL_PRECISION,
                    "scale": DECIMAL_SCALE,
                },
            }
        ],
    }


def test_every_record_of_the_spec_has_a_schema() -> None:
    assert set(SCHEMA_NAMES) == set(SAMPLES)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=SCHEMA_NAMES)
def test_schema_parses_and_is_self_contained(path: Path) -> None:
    schema = json.loads(path.read_text())
    fastavro.parse_schema(schema)  # raises on unknown named types: nothing may be external
    assert schema["name"] == path.stem
    assert schema["namespace"] == "io.tradeblotter.v1"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_record_and_field_is_documented(name: str) -> None:
    for record in records_of(load_schema(name)):
        assert record.get("doc", "").strip(), f"record {record['name']} has no doc"
        for field in record["fields"]:
            assert field.get("doc", "").strip(), f"{record['name']}.{field['name']} has no doc"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_no_binary_floats_and_money_is_decimal_38_8(name: str) -> None:
    nodes = list(walk_types(load_schema(name)))
    type_names = {n for n in nodes if isinstance(n, str)} | {
        n["type"] for n in nodes if isinstance(n, dict) and isinstance(n.get("type"), str)
    }
    assert "long" in type_names  # the walk reaches field types
    assert not {"float", "double"} & type_names
    decimals = [n for n in nodes if isinstance(n, dict) and n.get("logicalType") == "decimal"]
    for node in decimals:
        assert (node["type"], node["precision"], node["scale"]) == (
            "bytes",
            DECIMAL_PRECISION,
            DECIMAL_SCALE,
        )


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_optional_fields_are_null_unions_defaulting_to_null(name: str) -> None:
    for record in records_of(load_schema(name)):
        for field in record["fields"]:
            if isinstance(field["type"], list):
                assert field["type"][0] == "null" and len(field["type"]) == 2
                assert "default" in field and field["default"] is None


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_enum_defaults_to_unknown(name: str) -> None:
    enums = [
        n for n in walk_types(load_schema(name)) if isinstance(n, dict) and n.get("type") == "enum"
    ]
    for node in enums:
        assert node["default"] == "UNKNOWN" and "UNKNOWN" in node["symbols"]


@pytest.mark.parametrize("name", [n for n in SCHEMA_NAMES if n != "Position"])
def test_events_carry_the_common_fields(name: str) -> None:
    fields = {f["name"]: f["type"] for f in load_schema(name)["fields"]}
    assert fields["eventId"] == "string"
    assert fields["sequence"] == "long"
    assert fields["eventTime"] == {"type": "long", "logicalType": "timestamp-millis"}
    for optional in ("correlationId", "causationId", "source"):
        assert fields[optional] == ["null", "string"]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_realistic_record_round_trips_exactly(name: str) -> None:
    schema = load_schema(name)
    record = SAMPLES[name]
    decoded = decode(encode(schema, record), schema)
    assert decoded == record  # Decimal equality is by value: 101.25 == 101.25000000
    for field, value in record.items():
        if isinstance(value, Decimal):
            assert decoded[field].as_tuple().exponent == -DECIMAL_SCALE


def test_decimal_smallest_unit_and_typical_price_survive() -> None:
    schema = decimal_schema()
    for amount in (D("101.25"), D("0.00000001"), D("-0.00000001"), LARGEST, -LARGEST):
        assert decode(encode(schema, {"amount": amount}), schema)["amount"] == amount


# Built from integer units: st.decimals bounds are rounded by the default 28-digit context.
@given(
    st.integers(min_value=-(10**DECIMAL_PRECISION - 1), max_value=10**DECIMAL_PRECISION - 1).map(
        lambda units: D(f"{units}E-{DECIMAL_SCALE}")
    )
)
def test_any_in_range_decimal_at_scale_round_trips(amount: Decimal) -> None:
    schema = decimal_schema()
    assert decode(encode(schema, {"amount": amount}), schema)["amount"] == amount


@pytest.mark.parametrize("amount", [D("1.123456789"), D("1.000000000")])
def test_fastavro_rejects_decimals_finer_than_the_scale_so_writers_must_quantize(
    amount: Decimal,
) -> None:
    schema = decimal_schema()
    with pytest.raises(ValueError):
        encode(schema, {"amount": amount})
    quantized = amount.quantize(DECIMAL_QUANTUM, context=Context(prec=DECIMAL_PRECISION))
    assert decode(encode(schema, {"amount": quantized}), schema)["amount"] == quantized


def test_quantizing_with_the_schema_precision_rejects_out_of_range_values() -> None:
    context = Context(prec=DECIMAL_PRECISION)
    with pytest.raises(InvalidOperation):
        D("1E+30").quantize(DECIMAL_QUANTUM, context=context)
    assert LARGEST.quantize(DECIMAL_QUANTUM, context=context) == LARGEST


def evolved_side_writer() -> dict[str, Any]:
    writer = load_schema("Order")
    side = next(f for f in writer["fields"] if f["name"] == "side")
    side["type"]["symbols"].append("BUY_TO_COVER")
    return writer


def test_reader_maps_a_new_enum_symbol_to_the_default() -> None:
    writer = evolved_side_writer()
    data = encode(writer, {**SAMPLES["Order"], "side": "BUY_TO_COVER"})
    assert decode(data, writer, load_schema("Order"))["side"] == "UNKNOWN"


def test_reader_without_an_enum_default_could_not_read_a_new_symbol() -> None:
    # The counterfactual that justifies the UNKNOWN defaults.
    writer = evolved_side_writer()
    reader = load_schema("Order")
    del next(f for f in reader["fields"] if f["name"] == "side")["type"]["default"]
    data = encode(writer, {**SAMPLES["Order"], "side": "BUY_TO_COVER"})
    with pytest.raises(Exception):  # noqa: B017 - fastavro raises its own SchemaResolutionError
        decode(data, writer, reader)


def with_extra_optional_field(schema: dict[str, Any]) -> dict[str, Any]:
    evolved = copy.deepcopy(schema)
    evolved["fields"].append(
        {
            "name": "strategyTag",
            "type": ["null", "string"],
            "default": None,
            "doc": "A field added by a later version.",
        }
    )
    return evolved


@pytest.mark.parametrize("name", ["Order", "Trade", "Position"])
def test_new_writer_with_extra_optional_field_decodes_with_our_reader(name: str) -> None:
    ours = load_schema(name)
    writer = with_extra_optional_field(ours)
    decoded = decode(encode(writer, {**SAMPLES[name], "strategyTag": "momo"}), writer, ours)
    assert decoded == SAMPLES[name]


@pytest.mark.parametrize("name", ["Order", "Trade", "Position"])
def test_old_writer_without_a_field_decodes_with_a_reader_that_has_it(name: str) -> None:
    ours = load_schema(name)
    reader = with_extra_optional_field(ours)
    decoded = decode(encode(ours, SAMPLES[name]), ours, reader)
    assert decoded == {**SAMPLES[name], "strategyTag": None}


def test_old_writer_without_an_optional_field_of_ours_decodes() -> None:
    ours = load_schema("Trade")
    old = copy.deepcopy(ours)
    old["fields"] = [f for f in old["fields"] if f["name"] != "contractId"]
    record = {k: v for k, v in SAMPLES["Trade"].items() if k != "contractId"}
    assert decode(encode(old, record), old, ours) == {**record, "contractId": None}


def test_manifest_points_at_existing_schemas_with_one_id_per_schema() -> None:
    manifest = load_manifest()
    files_by_id: dict[int, set[Path]] = {}
    ids_by_file: dict[Path, set[int]] = {}
    for schema_id, path in manifest.values():
        assert path.is_file()
        fastavro.parse_schema(json.loads(path.read_text()))
        files_by_id.setdefault(schema_id, set()).add(path)
        ids_by_file.setdefault(path, set()).add(schema_id)
    assert all(len(files) == 1 for files in files_by_id.values())
    assert all(len(ids) == 1 for ids in ids_by_file.values())
    assert {path.stem for path in ids_by_file} == set(SCHEMA_NAMES)


def test_manifest_covers_the_default_topics() -> None:
    by_subject = {subject: path.stem for subject, (_, path) in load_manifest().items()}
    assert by_subject == {
        "order-events-value": "Order",
        "execution-events-value": "Execution",
        "quote-request-events-value": "QuoteRequest",
        "quote-events-value": "Quote",
        "trade-events-value": "Trade",
        "market-prices-value": "MarketPrice",
        "contract-events-value": "ContractRule",
        "backdated-trades-value": "Trade",
        "trade-applied-events-value": "TradeApplied",
        "provisional-trade-events-value": "ProvisionalTradeApplied",
        "historical-position-corrected-events-value": "HistoricalPositionCorrected",
        "position-value": "Position",
    }
