"""Every malformed client message gets a typed error, and the session keeps working."""

from __future__ import annotations

import orjson
import pytest

from tests.unit.test_blotter_harness import Harness, ModelClient, drain, send
from web.blotter import protocol
from web.blotter.config import BlotterConfig

ORDER_FILTER = {"fieldName": "account", "operator": "equals", "value": "A"}


def _nested(depth: int) -> dict:
    node: dict = ORDER_FILTER
    for _ in range(depth):
        node = {"logicalOperator": "AND", "filters": [node, ORDER_FILTER]}
    return node


MALFORMED: list[tuple[str, str | bytes, str, str | None]] = [
    ("not json", "{nope", protocol.BAD_MESSAGE, None),
    ("empty frame", "", protocol.BAD_MESSAGE, None),
    ("json array", "[1, 2]", protocol.BAD_MESSAGE, None),
    ("json string", '"subscribe"', protocol.BAD_MESSAGE, None),
    ("no type", '{"id": "s1"}', protocol.BAD_MESSAGE, None),
    ("type not a string", '{"type": 7}', protocol.BAD_MESSAGE, None),
    ("unknown type", '{"type": "snapshot", "id": "s1"}', protocol.BAD_MESSAGE, None),
    ("subscribe without id", '{"type": "subscribe", "objectType": "Order"}',
     protocol.BAD_MESSAGE, None),
    ("id not a string", '{"type": "subscribe", "id": 5, "objectType": "Order"}',
     protocol.BAD_MESSAGE, None),
    ("id too long", orjson.dumps({"type": "unsubscribe", "id": "x" * 200}),
     protocol.BAD_MESSAGE, None),
    ("no objectType", '{"type": "subscribe", "id": "s1"}', protocol.BAD_MESSAGE, "s1"),
    ("unknown objectType", '{"type": "subscribe", "id": "s1", "objectType": "Trade"}',
     protocol.UNKNOWN_OBJECT_TYPE, "s1"),
    ("filter not an object",
     '{"type": "subscribe", "id": "s1", "objectType": "Order", "filter": [1]}',
     protocol.INVALID_FILTER, "s1"),
    ("unknown field", orjson.dumps({
        "type": "subscribe", "id": "s1", "objectType": "Order",
        "filter": {"fieldName": "colour", "operator": "equals", "value": "red"}}),
     protocol.UNKNOWN_FIELD, "s1"),
    ("bad operator", orjson.dumps({
        "type": "subscribe", "id": "s1", "objectType": "Order",
        "filter": {"fieldName": "account", "operator": "like", "value": "A"}}),
     protocol.INVALID_FILTER, "s1"),
    ("wrong value type", orjson.dumps({
        "type": "subscribe", "id": "s1", "objectType": "Order",
        "filter": {"fieldName": "orderQty", "operator": "greaterThan", "value": "lots"}}),
     protocol.INVALID_FILTER, "s1"),
    ("too deep", orjson.dumps({
        "type": "subscribe", "id": "s1", "objectType": "Order", "filter": _nested(12)}),
     protocol.INVALID_FILTER, "s1"),
    ("negative credits",
     '{"type": "subscribe", "id": "s1", "objectType": "Order", "credits": -1}',
     protocol.BAD_MESSAGE, "s1"),
    ("credits not an integer",
     '{"type": "subscribe", "id": "s1", "objectType": "Order", "credits": "10"}',
     protocol.BAD_MESSAGE, "s1"),
    ("credits boolean",
     '{"type": "subscribe", "id": "s1", "objectType": "Order", "credits": true}',
     protocol.BAD_MESSAGE, "s1"),
    ("request without n", '{"type": "request", "id": "live"}', protocol.BAD_MESSAGE, "live"),
    ("request zero", '{"type": "request", "id": "live", "n": 0}', protocol.BAD_MESSAGE, "live"),
    ("request fractional", '{"type": "request", "id": "live", "n": 1.5}',
     protocol.BAD_MESSAGE, "live"),
    ("request huge", '{"type": "request", "id": "live", "n": 1e300}',
     protocol.BAD_MESSAGE, "live"),
    ("request unknown id", '{"type": "request", "id": "nope", "n": 5}',
     protocol.UNKNOWN_SUBSCRIPTION, "nope"),
    ("unsubscribe unknown id", '{"type": "unsubscribe", "id": "nope"}',
     protocol.UNKNOWN_SUBSCRIPTION, "nope"),
    ("duplicate subscription", '{"type": "subscribe", "id": "live", "objectType": "Order"}',
     protocol.DUPLICATE_SUBSCRIPTION, "live"),
    ("ping with an object id", '{"type": "ping", "id": {"a": 1}}', protocol.BAD_MESSAGE, None),
]


@pytest.mark.parametrize(
    ("raw", "code", "sub_id"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_message_gets_a_typed_error_and_the_session_survives(raw, code, sub_id) -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()
    send(session, {"type": "subscribe", "id": "live", "objectType": "Order", "credits": 100})
    drain(session, client)
    session.handle_text(raw)
    drain(session, client)
    assert len(client.errors) == 1
    error = client.errors[0]
    assert error["code"] == code
    assert error.get("id") == sub_id
    assert error["message"]
    # still working: the live subscription receives, a ping is answered
    harness.order("K1", 1)
    send(session, {"type": "ping", "id": "p1"})
    drain(session, client)
    assert "K1" in client.views["live"].rows
    assert client.control[-1]["type"] == "pong" and client.control[-1]["id"] == "p1"
    assert session.close_code is None


def test_filter_errors_carry_the_path_inside_the_message() -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()
    send(session, {
        "type": "subscribe", "id": "s1", "objectType": "Order",
        "filter": {"logicalOperator": "AND", "filters": [
            ORDER_FILTER, {"fieldName": "nope", "operator": "equals", "value": 1}]},
    })
    drain(session, client)
    assert client.errors[0]["code"] == protocol.UNKNOWN_FIELD
    assert client.errors[0]["path"].startswith("filter.filters[1]")


def test_ag_grid_model_is_accepted_unchanged() -> None:
    harness = Harness()
    harness.order("K1", 1, account="A", qty="500")
    harness.order("K2", 1, account="A", qty="5")
    session, client = harness.session(), ModelClient()
    send(session, {
        "type": "subscribe", "id": "s1", "objectType": "Order",
        "filter": {
            "account": {"filterType": "text", "type": "equals", "filter": "A"},
            "orderQty": {"filterType": "number", "type": "greaterThan", "filter": 100},
        },
    })
    drain(session, client)
    assert client.errors == []
    assert set(client.views["s1"].rows) == {"K1"}


def test_too_many_subscriptions() -> None:
    harness = Harness(BlotterConfig(max_subscriptions=2))
    session, client = harness.session(), ModelClient()
    for i in range(3):
        send(session, {"type": "subscribe", "id": f"s{i}", "objectType": "Quote"})
    drain(session, client)
    assert [e["code"] for e in client.errors] == [protocol.TOO_MANY_SUBSCRIPTIONS]


def test_binary_frames_are_refused_politely() -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()
    session.handle_binary()
    drain(session, client)
    assert client.errors[0]["code"] == protocol.BAD_MESSAGE


def test_a_server_bug_in_handling_becomes_internal_error(monkeypatch) -> None:
    harness = Harness()
    session, client = harness.session(), ModelClient()

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(session, "_subscribe", broken)
    send(session, {"type": "subscribe", "id": "s1", "objectType": "Order"})
    send(session, {"type": "ping"})
    drain(session, client)
    assert client.errors[0]["code"] == protocol.INTERNAL_ERROR
    assert client.control[-1]["type"] == "pong"


def test_server_frames_are_valid_json() -> None:
    id_json = protocol.encode_id('quote"and\\slash')
    frames = [
        protocol.snapshot_frame(id_json, [b'{"op":"upsert","key":"k","sequence":1,"row":{}}']),
        protocol.snapshot_end_frame(id_json, 1),
        protocol.changes_frame(id_json, [b'{"op":"remove","key":"k","sequence":2}'] * 2),
        protocol.welcome_frame("b1", True, {"x": 1}),
        protocol.error_frame(protocol.SLOW_CONSUMER, "m", "s1", "filter"),
        protocol.pong_frame(None),
    ]
    decoded = [orjson.loads(frame) for frame in frames]
    assert decoded[0]["id"] == 'quote"and\\slash'
    assert decoded[1] == {"type": "snapshotEnd", "id": 'quote"and\\slash', "rows": 1}
    assert len(decoded[2]["changes"]) == 2
    assert decoded[4]["path"] == "filter"
    assert "id" not in decoded[5]
