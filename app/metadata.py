"""The Avro schemas in ``schemas/`` and the blotter metadata generated from them.

The ``.avsc`` files are the single source of truth: the wire format, the field docs shown by
``GET /v1/trade-blotter/metadata`` and the field types the filter compiler checks all come from
them, so they cannot drift apart.

``schemas/manifest.json`` lets producers and the app agree on schema ids without a Schema
Registry. Its shape is::

    {"subjects": {"<topic>-value": {"id": <int>, "file": "<Name>.avsc"}, ...}}

Subjects are the Confluent default ``<topic>-value`` names of the default topics. A schema used
by two subjects (``Trade`` on ``trade-events`` and ``backdated-trades``) has one id; distinct
schemas have distinct ids. :func:`load_manifest` enforces both so a bad edit fails at start-up
rather than as undecodable messages.

Money and quantities are ``bytes`` with logical type ``decimal``, precision
:data:`DECIMAL_PRECISION`, scale :data:`DECIMAL_SCALE`. fastavro rejects a ``Decimal`` whose
exponent is finer than the scale (even ``Decimal("1.000000000")``) and decodes every value with
exactly :data:`DECIMAL_SCALE` places, so writers quantize first; see :data:`DECIMAL_QUANTUM`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from app.domain.fields import FieldSpec, ObjectTypeSpec

MANIFEST_FILE = "manifest.json"

DECIMAL_PRECISION = 38
DECIMAL_SCALE = 8
# Quantize with decimal.Context(prec=DECIMAL_PRECISION) before writing: fastavro then accepts
# the value, and the quantize itself raises InvalidOperation for values too large for the schema
# (fastavro checks the digits of the value as given, so Decimal("1E+31") would slip through).
DECIMAL_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)

# Blotter object types in the order the metadata endpoint lists them: name -> (file, key field).
BLOTTER_OBJECT_TYPES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "Order": ("Order.avsc", "orderId"),
        "Execution": ("Execution.avsc", "execId"),
        "QuoteRequest": ("QuoteRequest.avsc", "quoteReqId"),
        "Quote": ("Quote.avsc", "quoteId"),
        "Position": ("Position.avsc", "positionKey"),
    }
)

_PRIMITIVE_TYPES = {
    "string": "String",
    "int": "Integer",
    "long": "Long",
    "boolean": "Boolean",
}
_LOGICAL_TYPES = {
    ("bytes", "decimal"): "Decimal",
    ("fixed", "decimal"): "Decimal",
    ("long", "timestamp-millis"): "Timestamp",
    ("long", "timestamp-micros"): "Timestamp",
    ("int", "date"): "Date",
    ("string", "uuid"): "String",
}
# Types a blotter row cannot hold as one scalar: listed in the metadata, but not filterable.
_NESTED_TYPES = {"array": "Array", "map": "Map", "record": "Record"}


def schemas_dir() -> Path:
    """The repository's ``schemas/`` directory, which sits next to the ``app`` package."""
    return Path(__file__).resolve().parent.parent / "schemas"


def load_manifest(schemas_dir: Path | None = None) -> dict[str, tuple[int, Path]]:
    """Read ``manifest.json`` into subject -> (schema id, absolute .avsc path).

    Raises ValueError when an entry is malformed, a file is missing, one file has two ids or two
    files share an id: any of these would make producers and consumers disagree silently.
    """
    base = _resolve_dir(schemas_dir)
    raw = json.loads((base / MANIFEST_FILE).read_text(encoding="utf-8"))
    subjects = raw.get("subjects") if isinstance(raw, dict) else None
    if not isinstance(subjects, dict) or not subjects:
        raise ValueError(f"{MANIFEST_FILE}: expected a non-empty 'subjects' object")

    manifest: dict[str, tuple[int, Path]] = {}
    id_of_file: dict[Path, int] = {}
    file_of_id: dict[int, Path] = {}
    for subject, entry in subjects.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{MANIFEST_FILE}: subject {subject!r} is not an object")
        schema_id, file_name = entry.get("id"), entry.get("file")
        if type(schema_id) is not int or schema_id <= 0:
            raise ValueError(f"{MANIFEST_FILE}: subject {subject!r} needs a positive int 'id'")
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"{MANIFEST_FILE}: subject {subject!r} needs a 'file'")
        path = (base / file_name).resolve()
        if not path.is_file():
            raise ValueError(f"{MANIFEST_FILE}: subject {subject!r} names missing file {file_name}")
        if id_of_file.setdefault(path, schema_id) != schema_id:
            raise ValueError(f"{MANIFEST_FILE}: {file_name} has two ids")
        if file_of_id.setdefault(schema_id, path) != path:
            raise ValueError(f"{MANIFEST_FILE}: id {schema_id} is used by two schema files")
        manifest[subject] = (schema_id, path)
    return manifest


def schema_files_by_id(schemas_dir: Path | None = None) -> dict[int, Path]:
    """Schema id -> .avsc path, the lookup a decoder needs for a Confluent wire-format id."""
    return {schema_id: path for schema_id, path in load_manifest(schemas_dir).values()}


def load_schema(name_or_file: str | Path, schemas_dir: Path | None = None) -> dict[str, Any]:
    """Parse one schema, given as ``"Order"``, ``"Order.avsc"`` or a path to a file.

    Returns the JSON as written (not fastavro-parsed) so callers may inspect docs and logical
    types; each call returns a fresh dict, safe to mutate.
    """
    path = Path(name_or_file)
    if not path.is_absolute() and path.parent == Path("."):
        file_name = path.name if path.suffix == ".avsc" else f"{path.name}.avsc"
        path = _resolve_dir(schemas_dir) / file_name
    schema = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(schema, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    return schema


def object_type_spec(record_schema: Mapping[str, Any], key_field: str) -> ObjectTypeSpec:
    """Turn an Avro record schema into the field specs the blotter, filters and metadata use."""
    if record_schema.get("type") != "record":
        raise ValueError("object_type_spec needs an Avro record schema")
    named = _named_types(record_schema, record_schema.get("namespace", ""))
    fields = tuple(_field_spec(field, named) for field in record_schema["fields"])
    key = next((spec for spec in fields if spec.name == key_field), None)
    if key is None:
        raise ValueError(f"{record_schema['name']}: no key field {key_field!r}")
    if key.nullable or not key.filterable:
        raise ValueError(
            f"{record_schema['name']}: key field {key_field!r} must be a required scalar"
        )
    return ObjectTypeSpec(name=record_schema["name"], key_field=key_field, fields=fields)


@lru_cache(maxsize=1)
def _blotter_metadata() -> tuple[ObjectTypeSpec, ...]:
    return tuple(
        object_type_spec(load_schema(file_name), key_field)
        for file_name, key_field in BLOTTER_OBJECT_TYPES.values()
    )


def blotter_metadata() -> list[ObjectTypeSpec]:
    """Specs of the blotter object types, in :data:`BLOTTER_OBJECT_TYPES` order (parsed once)."""
    return list(_blotter_metadata())


def blotter_object_type(name: str) -> ObjectTypeSpec | None:
    """The spec of one blotter object type by name (e.g. ``"Order"``), or None if unknown."""
    return next((spec for spec in _blotter_metadata() if spec.name == name), None)


def metadata_json() -> list[dict[str, object]]:
    """The body of ``GET /v1/trade-blotter/metadata``: one entry per blotter object type."""
    return [spec.to_json() for spec in _blotter_metadata()]


def _resolve_dir(directory: Path | None) -> Path:
    return directory if directory is not None else schemas_dir()


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _named_types(schema: Any, namespace: str) -> dict[str, dict[str, Any]]:
    """Every record/enum/fixed defined inside ``schema``, by short and full name.

    A named type is written out once; later uses refer to it by name, so resolving a field's type
    needs this table.
    """
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, ns)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = node.get("namespace", ns)
            found[node["name"]] = node
            found[_full_name(node["name"], ns)] = node
        if kind == "record":
            for field in node.get("fields", ()):
                walk(field.get("type"), ns)
        elif kind == "array":
            walk(node.get("items"), ns)
        elif kind == "map":
            walk(node.get("values"), ns)
        elif isinstance(kind, (dict, list)):
            walk(kind, ns)

    walk(schema, namespace)
    return found


def _field_spec(field: Mapping[str, Any], named: Mapping[str, dict[str, Any]]) -> FieldSpec:
    avro_type = field["type"]
    nullable = False
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        if len(branches) != 1:
            raise ValueError(
                f"field {field['name']!r}: only unions of null and one type are supported"
            )
        nullable = len(branches) != len(avro_type)
        avro_type = branches[0]
    data_type, values = _data_type(avro_type, named, field["name"])
    scalar = data_type not in _NESTED_TYPES.values()
    return FieldSpec(
        name=field["name"],
        data_type=data_type,
        description=field.get("doc", ""),
        filterable=scalar,
        sortable=scalar,
        nullable=nullable,
        values=values,
    )


def _data_type(
    avro_type: Any, named: Mapping[str, dict[str, Any]], field_name: str
) -> tuple[str, tuple[str, ...] | None]:
    if isinstance(avro_type, str) and avro_type in named:
        avro_type = named[avro_type]
    if isinstance(avro_type, str):
        avro_type = {"type": avro_type}
    if isinstance(avro_type.get("type"), dict):  # {"type": {"type": "long", ...}}
        return _data_type(avro_type["type"], named, field_name)

    kind, logical = avro_type.get("type"), avro_type.get("logicalType")
    if (kind, logical) in _LOGICAL_TYPES:
        return _LOGICAL_TYPES[(kind, logical)], None
    if kind in _PRIMITIVE_TYPES:
        return _PRIMITIVE_TYPES[kind], None
    if kind == "enum":
        # The default symbol stands for "a symbol this reader does not know"; it is not a value
        # a client can meaningfully filter on.
        default = avro_type.get("default")
        return "Enum", tuple(symbol for symbol in avro_type["symbols"] if symbol != default)
    if kind in _NESTED_TYPES:
        return _NESTED_TYPES[kind], None
    raise ValueError(
        f"field {field_name!r}: unsupported Avro type {kind!r} (money and "
        "quantities must be decimal, never float/double)"
    )
