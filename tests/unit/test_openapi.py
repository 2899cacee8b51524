"""The OpenAPI document: valid 3.1, in step with the routes, and true to what handlers return.

Bodies are produced by the real code (serde round trips of simulator events, the position
engine, the REST handlers with fake stores) and validated against the document's schemas, so a
field renamed in a handler or an `.avsc` fails here before a client notices.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from app.config import Topics
from app.domain.objects import OBJECT_TYPES
from app.domain.positions import Position, apply_trade
from app.domain.replay import CORRECTION, TRADE_APPLIED, HistoryEvent, correction
from app.domain.trades import TradeInput
from app.health import HealthMonitor
from app.metadata import load_schema, metadata_json
from app.rows import decimal_str, json_row
from app.serde import AvroSerde, ManifestResolver
from app.simulator import OmsSimulator
from web.auth import ANONYMOUS, PRINCIPAL_KEY
from web.auth_config import DEFAULT_PUBLIC_PATHS
from web.openapi import (
    OPENAPI_PATH,
    PLAIN_DECIMAL_PATTERN,
    openapi_document,
    openapi_handler,
)
from web.routes import ROUTED_HEADER, RestApi, error_response

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Documented before their handlers land in RestApi.install; an entry here only tolerates the
# route's absence, so nothing breaks when it arrives.
PENDING_ROUTES = frozenset(
    {
        ("GET", OPENAPI_PATH),
        ("GET", "/v1/objects/{type}"),
        ("GET", "/v1/positions"),
    }
)
DOC = openapi_document()
SERDE = AvroSerde(ManifestResolver())
BUSINESS_DATE = dt.date(2026, 11, 20)


class RecordingRouter:
    """Stands in for aiohttp's router: remembers (METHOD, path) of every add_* call."""

    def __init__(self) -> None:
        self.routes: set[tuple[str, str]] = set()

    def add_route(self, method: str, path: str, handler: Any, **_: Any) -> None:
        self.routes.add((method.upper(), path))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("add_") and name[4:] in HTTP_METHODS:
            method = name[4:].upper()
            return lambda path, handler, **_: self.routes.add((method, path))
        raise AttributeError(name)


def registered_routes() -> set[tuple[str, str]]:
    """(METHOD, path template) of every route RestApi.install mounts."""
    router = RecordingRouter()
    web_app = SimpleNamespace(router=router, on_cleanup=[], on_startup=[], on_shutdown=[])
    RestApi(SimpleNamespace(), None, {}).install(SimpleNamespace(web_app=web_app))
    return router.routes


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def validator(name: str) -> Draft202012Validator:
    """A validator for one component schema, resolving the document's internal $refs."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(name: str, instance: Any) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, f"{name}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
    )


# -- the document itself -------------------------------------------------------------------------
def test_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate(DOC, cls=OpenAPIV31SpecValidator)


def test_document_is_plain_json_and_built_fresh() -> None:
    assert orjson.loads(orjson.dumps(DOC)) == DOC
    other = openapi_document()
    other["paths"].clear()
    assert DOC["paths"], "callers may mutate their copy without touching anyone else's"


def test_every_registered_route_is_documented() -> None:
    missing = registered_routes() - documented_routes(DOC)
    assert not missing, f"routes without documentation: {sorted(missing)}"


def test_every_documented_route_is_registered() -> None:
    unserved = documented_routes(DOC) - registered_routes() - PENDING_ROUTES
    assert not unserved, f"documented but not served: {sorted(unserved)}"


def test_public_paths_need_no_token_and_the_rest_do() -> None:
    assert DOC["components"]["securitySchemes"]["bearerAuth"]["bearerFormat"] == "JWT"
    assert DOC["security"] == [{"bearerAuth": []}]
    for path, item in DOC["paths"].items():
        operation = item["get"]
        if path in DEFAULT_PUBLIC_PATHS:
            assert operation["security"] == [], path
            assert "401" not in operation["responses"], path
        else:
            assert path.startswith("/v1/"), path
            assert "security" not in operation, f"{path} must inherit bearerAuth"
            assert "401" in operation["responses"], path


def test_public_paths_follow_the_auth_configuration() -> None:
    doc = openapi_document(public_paths=(*DEFAULT_PUBLIC_PATHS, OPENAPI_PATH))
    assert doc["paths"][OPENAPI_PATH]["get"]["security"] == []


def test_operation_ids_are_unique() -> None:
    ids = [item["get"]["operationId"] for item in DOC["paths"].values()]
    assert len(ids) == len(set(ids))


# -- object rows follow the Avro schemas ---------------------------------------------------------
@pytest.mark.parametrize("type_name", list(OBJECT_TYPES))
def test_row_schema_has_every_avro_field_required(type_name: str) -> None:
    row = DOC["components"]["schemas"][type_name]
    avro_fields = [f["name"] for f in load_schema(OBJECT_TYPES[type_name].record)["fields"]]
    assert list(row["properties"]) == avro_fields
    assert row["required"] == avro_fields
    assert row["additionalProperties"] is False


def _decimal_fields(type_name: str) -> list[str]:
    return [
        f["name"]
        for f in load_schema(OBJECT_TYPES[type_name].record)["fields"]
        if "decimal" in orjson.dumps(f["type"]).decode()
    ]


@pytest.mark.parametrize("type_name", list(OBJECT_TYPES))
def test_row_decimals_are_strings_in_the_document(type_name: str) -> None:
    decimals = _decimal_fields(type_name)
    assert decimals, "every object type carries money or quantities"
    validate_row = validator(type_name)
    row = _sample_rows(seed=5)[type_name]
    for name in decimals:
        if row[name] is not None:
            assert not validate_row.is_valid({**row, name: float(row[name])}), name


def _sample_rows(seed: int, events: int = 120) -> dict[str, dict[str, Any]]:
    """The last row per object type, as GET /v1/objects/{type}/{id} would serve it."""
    topics = Topics()
    sim = OmsSimulator(seed=seed, business_date=BUSINESS_DATE)
    rows: dict[str, dict[str, Any]] = {}
    for _, event in zip(range(events), sim.events(), strict=False):
        if event.record not in OBJECT_TYPES:
            continue
        subject = f"{getattr(topics, event.topic_attr)}-value"
        decoded = SERDE.decode(SERDE.encode(event.value, event.record, subject), event.record)
        rows[event.record] = orjson.loads(orjson.dumps(json_row(decoded)))
    return rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=100_000))
def test_rows_served_for_simulated_traffic_conform(seed: int) -> None:
    for type_name, row in _sample_rows(seed).items():
        assert_valid(type_name, row)
        assert_valid("ObjectRow", row)


def test_unknown_enum_symbol_is_allowed_in_rows() -> None:
    """A reader maps a symbol it does not know to the default, and serves that."""
    row = _sample_rows(seed=5)["Order"]
    assert_valid("Order", {**row, "timeInForce": "UNKNOWN"})
    assert not validator("Order").is_valid({**row, "timeInForce": "SOMETIMES"})


@given(
    st.decimals(min_value=Decimal("-1E+29"), max_value=Decimal("1E+29"), places=8, allow_nan=False)
)
def test_decimal_schema_accepts_every_value_rows_write(value: Decimal) -> None:
    assert_valid("Decimal", decimal_str(value))


@pytest.mark.parametrize("text", ["+1", "1.", ".5", "", "NaN", "Infinity", "1,5", "1E", "0x10"])
def test_decimal_schema_rejects_other_notations(text: str) -> None:
    assert not validator("Decimal").is_valid(text)


def test_timestamp_schema_checks_the_format() -> None:
    assert validator("Timestamp").is_valid("2026-11-20T14:00:00.000Z")
    assert not validator("Timestamp").is_valid("yesterday")


# -- handler bodies ------------------------------------------------------------------------------
def test_error_body_conforms() -> None:
    response = error_response(404, "NOT_FOUND", "no Order with id X")
    assert_valid("Error", orjson.loads(response.body))
    assert not validator("Error").is_valid({"error": "NOT_FOUND"})


def test_metadata_conforms() -> None:
    assert_valid("Metadata", metadata_json())


async def test_health_bodies_conform() -> None:
    app = SimpleNamespace(ready=True, agents={}, rebalancing=False)
    rest = RestApi(app, HealthMonitor(app), {})
    for handler, schema in (
        (rest.health, "Health"),
        (rest.liveness, "HealthStatus"),
        (rest.readiness, "HealthStatus"),
    ):
        response = await handler(None)
        assert response.status == 200
        assert_valid(schema, orjson.loads(response.body))


def _trade(trade_id: str, side: str, quantity: Decimal, price: Decimal, ms: int) -> TradeInput:
    return TradeInput(
        trade_id=trade_id,
        account="ACC-1",
        symbol="XYZ",
        side=side,
        quantity=quantity,
        price=price,
        trade_time=1_790_000_000_000 + ms,
        effective_date=BUSINESS_DATE,
        correlation_id=f"corr-{trade_id}" if ms % 2 else None,
    )


def _rest_with(position: Position, events: list[HistoryEvent], price: Decimal | None) -> RestApi:
    store = SimpleNamespace(
        positions=SimpleNamespace(name="positions"),
        get=lambda key: position if key == position.position_key else None,
        events=lambda key, upto: iter(events),
    )
    positions = SimpleNamespace(store=store, prices=SimpleNamespace(price=lambda symbol: price))
    return RestApi(SimpleNamespace(ready=True), None, {}, positions)


class _FakeRequest(dict):
    """A request as the handlers see it after the auth middleware (entitled to everything)."""

    def __init__(self, position_key: str) -> None:
        super().__init__({PRINCIPAL_KEY: ANONYMOUS})
        self.match_info = {"positionKey": position_key}
        # The routed header marks the request as already forwarded: answered locally.
        self.headers = {ROUTED_HEADER: "1"}


def _request(position_key: str) -> Any:
    return _FakeRequest(position_key)


AMOUNTS = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(100_000), places=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trades=st.lists(
        st.tuples(st.sampled_from(["BUY", "SELL"]), AMOUNTS, AMOUNTS), min_size=0, max_size=12
    ),
    price=st.none() | AMOUNTS,
)
async def test_position_and_events_served_conform(
    trades: list[tuple[str, Decimal, Decimal]], price: Decimal | None
) -> None:
    position = Position("ACC-1", "XYZ")
    history = []
    for index, (side, quantity, trade_price) in enumerate(trades):
        trade = _trade(f"T{index}", side, quantity, trade_price, index)
        result = apply_trade(position, trade)
        history.append(HistoryEvent(result.version, TRADE_APPLIED, trade, trade.correlation_id))
    if history:
        details = {
            "positionKey": "ACC-1:XYZ",
            "previousVersion": 1,
            "newVersion": 2,
            **{f"quantity{s}": "0" for s in ("Before", "After", "Delta")},
            **{f"lotCount{s}": 0 for s in ("Before", "After", "Delta")},
            **{f"realizedPnl{s}": "0" for s in ("Before", "After", "Delta")},
            **{f"exposure{s}": None for s in ("Before", "After", "Delta")},
        }
        last = history[-1]
        history.append(HistoryEvent(last.version + 1, CORRECTION, last.trade, details=details))
    rest = _rest_with(position, history, price)

    response = await rest.get_position(_request("ACC-1:XYZ"))
    assert response.status == 200
    assert_valid("Position", orjson.loads(response.body))

    response = await rest.get_position_events(_request("ACC-1:XYZ"))
    assert response.status == 200
    body = orjson.loads(response.body)
    assert len(body["events"]) == len(history)
    assert_valid("PositionEvents", body)

    missing = await rest.get_position(_request("ACC-1:NOPE"))
    assert missing.status == 404
    assert_valid("Error", orjson.loads(missing.body))


def _decimal_strings(body: Any, path: str = "") -> list[tuple[str, str]]:
    """(json path, value) of every string that the document types as a decimal, found by name."""
    names = ("quantity", "price", "pnl", "exposure", "cost", "px", "qty", "size")
    found: list[tuple[str, str]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str) and any(n in key.lower() for n in names):
                found.append((f"{path}.{key}", value))
            else:
                found += _decimal_strings(value, f"{path}.{key}")
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found += _decimal_strings(value, f"{path}[{index}]")
    return found


def _not_plain(body: Any) -> list[tuple[str, str]]:
    return [(p, v) for p, v in _decimal_strings(body) if not re.match(PLAIN_DECIMAL_PATTERN, v)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=100_000))
def test_object_rows_write_plain_decimals(seed: int) -> None:
    rows = _sample_rows(seed)
    assert any(_decimal_strings(row) for row in rows.values())
    for row in rows.values():
        assert not _not_plain(row)




async def test_position_with_a_tiny_price_writes_plain_decimals() -> None:
    position = Position("ACC-1", "XYZ")
    apply_trade(position, _trade("T1", "BUY", Decimal(1), Decimal("0.0000001"), 1))
    response = await _rest_with(position, [], None).get_position(_request("ACC-1:XYZ"))
    body = orjson.loads(response.body)
    assert_valid("Position", body)
    assert not _not_plain(body)


def test_correction_at_a_scale_8_price_writes_plain_decimals() -> None:
    """Market prices decode from Avro at scale 8, so an unchanged exposure is 0E-8."""
    before = Position("ACC-1", "XYZ")
    apply_trade(before, _trade("T1", "BUY", Decimal(5), Decimal("10.5"), 1))
    after = before.copy()
    details = correction(before, after, Decimal("328.97000000")).to_dict()
    assert_valid("Correction", details)
    assert not _not_plain(details)


# -- the endpoint --------------------------------------------------------------------------------
async def test_handler_serves_the_document_as_json() -> None:
    app = web.Application()
    app.router.add_get(OPENAPI_PATH, openapi_handler)
    async with TestClient(TestServer(app)) as client:
        first = await client.get(OPENAPI_PATH)
        assert first.status == 200
        assert first.content_type == "application/json"
        body = await first.read()
        assert orjson.loads(body) == DOC
        second = await client.get(OPENAPI_PATH)
        assert await second.read() == body


def test_path_templates_match_aiohttp_syntax() -> None:
    for path in DOC["paths"]:
        for name in re.findall(r"{([^}]+)}", path):
            params = DOC["paths"][path]["get"]["parameters"]
            assert any(p["name"] == name and p["in"] == "path" for p in params), (path, name)
