"""Blotter metadata generated from the Avro schemas, and the manifest loader's safety checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.domain.fields import DATA_TYPES
from app.metadata import (
    BLOTTER_OBJECT_TYPES,
    blotter_metadata,
    blotter_object_type,
    load_manifest,
    load_schema,
    metadata_json,
    object_type_spec,
    schema_files_by_id,
    schemas_dir,
)


def record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Thing",
        "namespace": "x.y",
        "doc": "A thing.",
        "fields": [{"name": "id", "type": "string", "doc": "Id."}, *fields],
    }


def test_order_fields_are_typed_from_the_schema() -> None:
    order = blotter_object_type("Order")
    assert order is not None and order.key_field == "orderId"
    order_id = order.get_field("orderId")
    assert order_id is not None
    assert (order_id.data_type, order_id.nullable) == ("String", False)
    assert order_id.description == "Unique identifier for the order, assigned by the OMS."
    assert order.get_field("orderQty").data_type == "Decimal"
    side = order.get_field("side")
    assert side.data_type == "Enum" and side.values == ("BUY", "SELL", "SELL_SHORT")
    assert order.get_field("eventTime").data_type == "Timestamp"
    assert order.get_field("sequence").data_type == "Long"
    price = order.get_field("price")
    assert price.data_type == "Decimal" and price.nullable


def test_every_schema_field_appears_with_its_doc_in_schema_order() -> None:
    for spec in blotter_metadata():
        file_name, key_field = BLOTTER_OBJECT_TYPES[spec.name]
        schema = load_schema(file_name)
        assert spec.key_field == key_field
        assert [(f.name, f.description) for f in spec.fields] == [
            (f["name"], f["doc"]) for f in schema["fields"]
        ]
        assert all(f.data_type in DATA_TYPES for f in spec.fields)


def test_metadata_lists_the_blotter_types_in_order_including_position() -> None:
    assert [spec.name for spec in blotter_metadata()] == [
        "Order",
        "Execution",
        "QuoteRequest",
        "Quote",
        "Position",
    ]
    position = blotter_object_type("Position")
    assert position is not None and position.key_field == "positionKey"
    assert position.get_field("status").values == ("RECONCILED", "PROVISIONAL")
    assert position.get_field("lotCount").data_type == "Integer"
    assert position.get_field("lastPrice").nullable
    assert blotter_object_type("Trade") is None


def test_metadata_json_is_serializable_and_enums_carry_values() -> None:
    body = json.loads(json.dumps(metadata_json()))
    order = next(entry for entry in body if entry["name"] == "Order")
    fields = {f["name"]: f for f in order["fields"]}
    assert fields["side"]["values"] == ["BUY", "SELL", "SELL_SHORT"]
    assert fields["orderQty"] == {
        "name": "orderQty",
        "dataType": "Decimal",
        "description": "Quantity ordered, in units of the instrument.",
        "filterable": True,
        "sortable": True,
        "nullable": False,
    }
    assert "values" not in fields["orderId"]


def test_blotter_metadata_returns_a_copy_of_the_cached_list() -> None:
    first = blotter_metadata()
    first.clear()
    assert len(blotter_metadata()) == len(BLOTTER_OBJECT_TYPES)


def test_logical_and_nested_types_map_to_blotter_types() -> None:
    money = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 8}
    spec = object_type_spec(
        record(
            {"name": "d", "type": {"type": "int", "logicalType": "date"}, "doc": "A date."},
            {"name": "b", "type": "boolean", "doc": "A flag."},
            {"name": "m", "type": ["null", money], "default": None, "doc": "Money."},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "doc": "Tags."},
            {"name": "attrs", "type": {"type": "map", "values": "string"}, "doc": "Attributes."},
        ),
        "id",
    )
    by_name = {f.name: f for f in spec.fields}
    assert by_name["d"].data_type == "Date"
    assert by_name["b"].data_type == "Boolean"
    assert (by_name["m"].data_type, by_name["m"].nullable) == ("Decimal", True)
    for nested in ("tags", "attrs"):
        assert not by_name[nested].filterable and not by_name[nested].sortable
    assert by_name["d"].filterable and by_name["d"].sortable


def test_a_named_enum_referenced_twice_resolves_both_times() -> None:
    colour = {
        "type": "enum",
        "name": "Colour",
        "symbols": ["UNKNOWN", "RED", "BLUE"],
        "default": "UNKNOWN",
    }
    spec = object_type_spec(
        record(
            {"name": "first", "type": colour, "doc": "First colour."},
            {"name": "second", "type": ["null", "x.y.Colour"], "default": None, "doc": "Second."},
        ),
        "id",
    )
    assert spec.get_field("first").values == ("RED", "BLUE")
    second = spec.get_field("second")
    assert (second.data_type, second.values, second.nullable) == ("Enum", ("RED", "BLUE"), True)


@pytest.mark.parametrize("bad_type", ["double", "float", ["null", "string", "long"]])
def test_types_the_blotter_cannot_represent_are_rejected(bad_type: Any) -> None:
    with pytest.raises(ValueError):
        object_type_spec(record({"name": "x", "type": bad_type, "doc": "X."}), "id")


def test_key_field_must_exist_and_be_required() -> None:
    with pytest.raises(ValueError):
        object_type_spec(record(), "missing")
    optional_key = record({"name": "k", "type": ["null", "string"], "default": None, "doc": "K."})
    with pytest.raises(ValueError):
        object_type_spec(optional_key, "k")


def test_schemas_dir_is_the_repository_schemas_folder() -> None:
    assert (schemas_dir() / "manifest.json").is_file()
    assert load_schema("Order") == load_schema("Order.avsc")
    assert load_schema(schemas_dir() / "Order.avsc")["name"] == "Order"


def test_schema_files_by_id_inverts_the_manifest() -> None:
    by_id = schema_files_by_id()
    for schema_id, path in load_manifest().values():
        assert by_id[schema_id] == path


def write_manifest(directory: Path, subjects: dict[str, Any]) -> Path:
    for name in ("A.avsc", "B.avsc"):
        (directory / name).write_text(json.dumps(record()))
    (directory / "manifest.json").write_text(json.dumps({"subjects": subjects}))
    return directory


def test_loader_reads_a_manifest_from_another_directory(tmp_path: Path) -> None:
    write_manifest(
        tmp_path, {"a-value": {"id": 7, "file": "A.avsc"}, "a2-value": {"id": 7, "file": "A.avsc"}}
    )
    assert load_manifest(tmp_path) == {
        "a-value": (7, (tmp_path / "A.avsc").resolve()),
        "a2-value": (7, (tmp_path / "A.avsc").resolve()),
    }


@pytest.mark.parametrize(
    "subjects",
    [
        {"a-value": {"id": 1, "file": "A.avsc"}, "b-value": {"id": 1, "file": "B.avsc"}},
        {"a-value": {"id": 1, "file": "A.avsc"}, "a2-value": {"id": 2, "file": "A.avsc"}},
        {"a-value": {"id": 1, "file": "Missing.avsc"}},
        {"a-value": {"id": "1", "file": "A.avsc"}},
        {"a-value": {"id": True, "file": "A.avsc"}},
        {},
    ],
    ids=["shared-id", "two-ids", "missing-file", "string-id", "bool-id", "empty"],
)
def test_loader_rejects_inconsistent_manifests(tmp_path: Path, subjects: dict[str, Any]) -> None:
    write_manifest(tmp_path, subjects)
    with pytest.raises(ValueError):
        load_manifest(tmp_path)
