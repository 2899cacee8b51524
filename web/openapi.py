"""The OpenAPI 3.1 description of the REST API, served at ``GET /v1/openapi.json``.

The object row schemas (Order, Execution, QuoteRequest, Quote) are generated from the Avro
schemas in ``schemas/`` through :mod:`app.metadata`, the same source the wire format, the metadata
endpoint and the filter compiler use, so a field added to an ``.avsc`` appears here without an
edit. Hand-written schemas cover the shapes the engine builds itself (positions, their audit
trail, health, errors). Which paths need a token follows the auth middleware's default public
paths, so the document cannot claim a probe is public while the middleware refuses it.

Conventions every schema follows (see :mod:`app.rows`): decimals are strings in plain notation
(a JSON number would be read as a binary float by most clients), timestamps are ISO-8601 UTC
strings, dates are ISO dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from aiohttp import web

from app.domain.fields import DATA_TYPES
from app.domain.objects import OBJECT_TYPES
from app.metadata import load_schema, object_type_spec
from app.rows import dumps
from web.auth_config import DEFAULT_PUBLIC_PATHS

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/v1/openapi.json"
API_VERSION = "1"

JSON = "application/json"
_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"

# Object rows write plain notation (app.rows.decimal_str); the position engine writes str(Decimal),
# which switches to exponent notation for tiny values and zeros at scale 8 ("0E-8"). Both parse
# exactly with any decimal library; PLAIN_DECIMAL_PATTERN is the form every output should share.
PLAIN_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
DECIMAL_PATTERN = PLAIN_DECIMAL_PATTERN
LOT_METHODS = ("FIFO", "LIFO", "HIFO")
POSITION_STATUSES = ("RECONCILED", "PROVISIONAL")
HISTORY_EVENT_TYPES = ("TRADE_APPLIED", "PROVISIONAL_TRADE_APPLIED", "CORRECTION")
TRADE_SIDES = ("BUY", "SELL")
# Nested Avro types the metadata lists but a filter cannot use (see app.metadata).
NESTED_DATA_TYPES = ("Array", "Map", "Record")
PAGE_LIMIT_MAX = 1000
PAGE_LIMIT_DEFAULT = 100


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _SCHEMAS + name}


def _nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema or JSON null (OpenAPI 3.1 has no `nullable`; JSON Schema unions replace it)."""
    if "$ref" in schema:
        return {"anyOf": [dict(schema), {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _obj(properties: Mapping[str, Any], *, optional: tuple[str, ...] = (), **extra: Any) -> dict:
    """An object with every property required unless named in `optional`, and no others: a
    field a handler adds without documenting it then fails the conformance tests."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
        **extra,
    }


def _string_enum(values: tuple[str, ...] | list[str], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "enum": list(values)}
    if description:
        out["description"] = description
    return out


# -- object rows from the Avro schemas -----------------------------------------------------------
_SCALAR_SCHEMAS: Mapping[str, dict[str, Any]] = {
    "String": {"type": "string"},
    "Integer": {"type": "integer", "format": "int32"},
    "Long": {"type": "integer", "format": "int64"},
    "Boolean": {"type": "boolean"},
    "Decimal": _ref("Decimal"),
    "Timestamp": _ref("Timestamp"),
    "Date": _ref("Date"),
}


def _enum_symbols(record_schema: Mapping[str, Any]) -> dict[str, list[str]]:
    """Field name -> every symbol of its enum, the reader's default ("UNKNOWN") included.

    The metadata endpoint leaves the default out because nobody filters on it, but a row carries
    it when the writer used a symbol this reader does not know, so the response schema must allow
    it. Named enums are defined at first use and referenced by name afterwards (Avro rule).
    """
    named: dict[str, list[str]] = {}
    by_field: dict[str, list[str]] = {}
    for field in record_schema["fields"]:
        avro_type = field["type"]
        branches = avro_type if isinstance(avro_type, list) else [avro_type]
        for branch in branches:
            if isinstance(branch, dict) and branch.get("type") == "enum":
                named[branch["name"]] = list(branch["symbols"])
                by_field[field["name"]] = named[branch["name"]]
            elif isinstance(branch, str) and branch in named:
                by_field[field["name"]] = named[branch]
    return by_field


def object_row_schema(type_name: str) -> dict[str, Any]:
    """JSON Schema of one object type's REST row, generated from its Avro record."""
    if type_name == "Position":  # the flat row of the change feed and listings
        record_name, key_field = "Position", "positionKey"
    else:
        object_type = OBJECT_TYPES[type_name]
        record_name, key_field = object_type.record, object_type.key_field
    record = load_schema(record_name)
    spec = object_type_spec(record, key_field)
    enums = _enum_symbols(record)
    properties: dict[str, Any] = {}
    for field in spec.fields:
        if field.data_type == "Enum":
            schema: dict[str, Any] = _string_enum(enums[field.name])
        elif field.data_type in _SCALAR_SCHEMAS:
            schema = dict(_SCALAR_SCHEMAS[field.data_type])
        else:  # a nested type: no object row has one today; describe it loosely rather than fail
            schema = {}
        if field.nullable and schema:
            schema = _nullable(schema)
        if field.description:
            schema = {**schema, "description": field.description}
        properties[field.name] = schema
    return _obj(
        properties,
        description=record.get("doc", f"Latest version of a {type_name}."),
        **{"x-key-field": key_field},
    )


# -- hand-written components ---------------------------------------------------------------------
def _common_schemas() -> dict[str, Any]:
    return {
        "Decimal": {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "An exact decimal as a string, never a JSON number, in plain "
            "notation without trailing zeros.",
            "examples": ["101.25", "-300", "0"],
        },
        "Timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "ISO-8601 UTC with milliseconds.",
            "examples": ["2026-11-20T14:00:00.000Z"],
        },
        "Date": {"type": "string", "format": "date", "examples": ["2026-11-20"]},
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": {
                            "type": "string",
                            "description": "Stable machine-readable code, e.g. NOT_FOUND, "
                            "UNKNOWN_TYPE, NOT_READY, OWNER_UNREACHABLE, UNAUTHORIZED, "
                            "AUTH_UNAVAILABLE, BAD_REQUEST.",
                        },
                        "message": {"type": "string", "description": "For humans; may change."},
                    }
                )
            },
            description="Every error answer of the API has this shape.",
        ),
    }


def _health_schemas() -> dict[str, Any]:
    up_down = _string_enum(("UP", "DOWN"))
    return {
        "HealthStatus": _obj({"status": up_down}),
        "HealthComponent": {
            "type": "object",
            "properties": {"status": up_down},
            "required": ["status"],
            "additionalProperties": True,
            "description": "One component's status plus component-specific facts.",
        },
        "Health": _obj(
            {
                "status": up_down,
                "components": {
                    "type": "object",
                    "additionalProperties": _ref("HealthComponent"),
                    "description": "eventLoop, agents, consumer, worker, ...",
                },
            },
            description="UP only when the worker is both alive and ready.",
        ),
    }


def _metadata_schemas() -> dict[str, Any]:
    return {
        "FieldMetadata": _obj(
            {
                "name": {"type": "string"},
                "dataType": _string_enum((*DATA_TYPES, *NESTED_DATA_TYPES)),
                "description": {"type": "string"},
                "filterable": {"type": "boolean"},
                "sortable": {"type": "boolean"},
                "nullable": {"type": "boolean"},
                "values": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The symbols a filter may use, for dataType Enum.",
                },
            },
            optional=("values",),
        ),
        "ObjectTypeMetadata": _obj(
            {
                "name": {"type": "string"},
                "keyField": {"type": "string"},
                "fields": {"type": "array", "items": _ref("FieldMetadata")},
            }
        ),
        "Metadata": {
            "type": "array",
            "items": _ref("ObjectTypeMetadata"),
            "description": "One entry per blotter object type, generated from the Avro schemas.",
        },
    }


def _object_schemas() -> dict[str, Any]:
    rows = {name: object_row_schema(name) for name in OBJECT_TYPES}
    return {
        **rows,
        "ObjectRow": {"anyOf": [_ref(name) for name in rows]},
        "ObjectPage": _obj(
            {
                "items": {"type": "array", "items": _ref("ObjectRow")},
                "next": {
                    "type": ["string", "null"],
                    "description": "Pass as `after` for the next page; null on the last page.",
                },
            },
            description="Objects of one type in id order.",
        ),
    }


def _position_schemas() -> dict[str, Any]:
    decimal_or_null = _nullable(_ref("Decimal"))
    correction_figures: dict[str, Any] = {}
    for suffix in ("Before", "After", "Delta"):
        correction_figures.update(
            {
                f"quantity{suffix}": _ref("Decimal"),
                f"lotCount{suffix}": {"type": "integer"},
                f"realizedPnl{suffix}": _ref("Decimal"),
                f"exposure{suffix}": decimal_or_null,
            }
        )
    return {
        "Lot": _obj(
            {
                "lotId": {"type": "string"},
                "tradeId": {"type": "string", "description": "The trade that opened the lot."},
                "effectiveDate": _ref("Date"),
                "tradeTime": _ref("Timestamp"),
                "quantity": {**_ref("Decimal"), "description": "Signed: negative for short."},
                "costPrice": _ref("Decimal"),
            }
        ),
        "Position": _obj(
            {
                "positionKey": {"type": "string", "description": "account + ':' + symbol"},
                "account": {"type": "string"},
                "symbol": {"type": "string"},
                "quantity": {**_ref("Decimal"), "description": "Signed: negative when short."},
                "lots": {"type": "array", "items": _ref("Lot")},
                "lotCount": {"type": "integer", "minimum": 0},
                "realizedPnl": _ref("Decimal"),
                "unrealizedPnl": {**decimal_or_null, "description": "null without a price."},
                "exposure": {**decimal_or_null, "description": "null without a price."},
                "lastPrice": decimal_or_null,
                "lotMethod": _string_enum(LOT_METHODS),
                "version": {"type": "integer", "format": "int64", "minimum": 0},
                "status": _string_enum(POSITION_STATUSES),
            }
        ),
        "PositionRow": object_row_schema("Position"),
        "PositionList": _obj(
            {
                "items": {"type": "array", "items": _ref("PositionRow")},
                "next": {
                    "type": ["string", "null"],
                    "description": "Pass as `after` for the next page; null on the last page.",
                },
            },
            description="An account's positions as rows (no lots), in positionKey order.",
        ),
        "HistoryTrade": _obj(
            {
                "tradeId": {"type": "string"},
                "account": {"type": "string"},
                "symbol": {"type": "string"},
                "side": _string_enum(TRADE_SIDES),
                "quantity": _ref("Decimal"),
                "price": _ref("Decimal"),
                "tradeTime": _ref("Timestamp"),
                "effectiveDate": _ref("Date"),
                "correlationId": {"type": "string"},
                "causationId": {"type": "string"},
                "eventId": {"type": "string"},
            },
            optional=("correlationId", "causationId", "eventId"),
        ),
        "Correction": _obj(
            {
                "positionKey": {"type": "string"},
                "previousVersion": {"type": "integer"},
                "newVersion": {"type": "integer"},
                **correction_figures,
            },
            description="Before/after/delta of the replay a backdated trade caused.",
        ),
        "PositionEvent": _obj(
            {
                "version": {"type": "integer", "format": "int64", "minimum": 1},
                "type": _string_enum(HISTORY_EVENT_TYPES),
                "tradeId": {"type": "string"},
                "correlationId": {"type": ["string", "null"]},
                "causationId": {"type": ["string", "null"]},
                "time": _ref("Timestamp"),
                "trade": _ref("HistoryTrade"),
                "details": {**_ref("Correction"), "description": "Only on CORRECTION events."},
            },
            optional=("details",),
        ),
        "PositionEvents": _obj(
            {
                "positionKey": {"type": "string"},
                "events": {"type": "array", "items": _ref("PositionEvent")},
            },
            description="The position's audit trail in version order.",
        ),
    }


# -- paths ---------------------------------------------------------------------------------------
def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema_name)}}}


def _responses() -> dict[str, Any]:
    return {
        "BadRequest": _json("Error", "A query parameter is malformed (BAD_REQUEST)."),
        "Unauthorized": {
            **_json("Error", "Missing, malformed, expired or otherwise invalid token."),
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        },
        "NotFound": _json("Error", "No such object, position or object type."),
        "Unavailable": _json(
            "Error",
            "Not ready (NOT_READY: tables recovering or partition unassigned), the owning worker "
            "is unreachable (OWNER_UNREACHABLE) or token keys are unavailable (AUTH_UNAVAILABLE).",
        ),
        "ServerError": _json("Error", "A stored object could not be decoded (DECODE_FAILED)."),
    }


def _error_responses(*codes: str) -> dict[str, Any]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "404": "NotFound",
        "500": "ServerError",
        "503": "Unavailable",
    }
    return {code: {"$ref": _RESPONSES + names[code]} for code in codes}


def _parameter(
    name: str, location: str, schema: dict[str, Any], description: str, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "in": location,
        "required": location == "path",
        "schema": schema,
        "description": description,
        **extra,
    }


def _type_parameter() -> dict[str, Any]:
    return _parameter(
        "type", "path", _string_enum(tuple(OBJECT_TYPES)), "The object type.", example="Order"
    )


def _position_key_parameter() -> dict[str, Any]:
    return _parameter(
        "positionKey",
        "path",
        {"type": "string"},
        "account + ':' + symbol.",
        example="ACC-001:AAPL",
    )


def _operation(
    operation_id: str, summary: str, tag: str, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses,
        **extra,
    }


def _health_paths() -> dict[str, Any]:
    def health(op_id: str, summary: str, schema: str) -> dict[str, Any]:
        return {
            "get": _operation(
                op_id,
                summary,
                "operations",
                {
                    "200": _json(schema, "UP."),
                    "503": _json(schema, "DOWN: probes fail on this status."),
                },
            )
        }

    return {
        "/health": health("getHealth", "Overall status with components.", "Health"),
        "/health/liveness": health(
            "getLiveness",
            "Event loop responsive, no agent crashed, no partition stalled.",
            "HealthStatus",
        ),
        "/health/readiness": health(
            "getReadiness", "Partitions assigned and tables recovered.", "HealthStatus"
        ),
        "/health/detailed": health("getHealthDetailed", "Component-level status.", "Health"),
        "/metrics": {
            "get": _operation(
                "getMetrics",
                "Prometheus metrics in the text exposition format.",
                "operations",
                {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
    }


def _data_paths() -> dict[str, Any]:
    page_parameters = [
        _type_parameter(),
        _parameter(
            "limit",
            "query",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": PAGE_LIMIT_MAX,
                "default": PAGE_LIMIT_DEFAULT,
            },
            "Page size.",
        ),
        _parameter(
            "after", "query", {"type": "string"}, "Start after this id (the previous `next`)."
        ),
    ]
    return {
        OPENAPI_PATH: {
            "get": _operation(
                "getOpenApi",
                "This document.",
                "meta",
                {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    **_error_responses("401", "503"),
                },
            )
        },
        "/v1/trade-blotter/metadata": {
            "get": _operation(
                "getBlotterMetadata",
                "Fields of every blotter object type, for filter builders and grids.",
                "blotter",
                {
                    "200": _json("Metadata", "The metadata."),
                    **_error_responses("401", "503"),
                },
            )
        },
        "/v1/objects/{type}": {
            "get": _operation(
                "listObjects",
                "Page through the latest versions of one object type in id order.",
                "objects",
                {
                    "200": _json("ObjectPage", "One page."),
                    **_error_responses("400", "401", "404", "503"),
                },
                parameters=page_parameters,
            )
        },
        "/v1/objects/{type}/{id}": {
            "get": _operation(
                "getObject",
                "Latest version of one object.",
                "objects",
                {
                    "200": _json("ObjectRow", "The row, shaped by the object type."),
                    **_error_responses("401", "404", "500", "503"),
                },
                parameters=[
                    _type_parameter(),
                    _parameter("id", "path", {"type": "string"}, "The object id."),
                ],
            )
        },
        "/v1/positions": {
            "get": _operation(
                "listPositions",
                "Positions of one account.",
                "positions",
                {
                    "200": _json("PositionList", "The account's positions."),
                    **_error_responses("400", "401", "503"),
                },
                parameters=[
                    _parameter(
                        "account",
                        "query",
                        {"type": "string"},
                        "The account whose positions to list.",
                        required=True,
                    ),
                    *page_parameters[1:],
                ],
            )
        },
        "/v1/positions/{positionKey}": {
            "get": _operation(
                "getPosition",
                "One position with its open lots and P&L at the latest price.",
                "positions",
                {
                    "200": _json("Position", "The position."),
                    **_error_responses("401", "404", "503"),
                },
                parameters=[_position_key_parameter()],
            )
        },
        "/v1/positions/{positionKey}/events": {
            "get": _operation(
                "getPositionEvents",
                "The position's audit trail.",
                "positions",
                {
                    "200": _json("PositionEvents", "The events, oldest first."),
                    **_error_responses("401", "404", "503"),
                },
                parameters=[_position_key_parameter()],
            )
        },
    }


def _apply_security(paths: dict[str, Any], public_paths: frozenset[str]) -> None:
    """Public paths opt out of the document-wide bearer requirement and cannot answer 401."""
    for path, item in paths.items():
        for operation in item.values():
            if path in public_paths:
                operation["security"] = []
                operation["responses"].pop("401", None)


def openapi_document(public_paths: tuple[str, ...] = DEFAULT_PUBLIC_PATHS) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document (a fresh dict each call, safe to mutate)."""
    paths = {**_health_paths(), **_data_paths()}
    _apply_security(paths, frozenset(public_paths))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Trade blotter and position engine",
            "version": API_VERSION,
            "description": (
                "Latest versions of OMS objects, positions with tax lots and their audit trail, "
                "health and metrics. Decimals are strings, timestamps ISO-8601 UTC. Live updates "
                "use the WebSocket at /v1/trade-blotter/stream, which OpenAPI does not describe."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "objects", "description": "Latest versions of OMS objects."},
            {"name": "positions", "description": "Positions, tax lots and audit trails."},
            {"name": "blotter", "description": "Metadata for blotter clients."},
            {"name": "operations", "description": "Probes and metrics; no token needed."},
            {"name": "meta", "description": "This description."},
        ],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Claims: sub, accounts (account ids or ['*']), exp, iss, aud. "
                    "Browsers may pass the token as the access_token query parameter.",
                }
            },
            "schemas": {
                **_common_schemas(),
                **_health_schemas(),
                **_metadata_schemas(),
                **_object_schemas(),
                **_position_schemas(),
            },
            "responses": _responses(),
        },
    }


@lru_cache(maxsize=1)
def _document_body() -> bytes:
    return dumps(openapi_document())


async def openapi_handler(request: web.Request) -> web.Response:
    """`GET /v1/openapi.json`. The document only changes with a release, so it is built and
    encoded once per process."""
    return web.Response(body=_document_body(), content_type=JSON)
