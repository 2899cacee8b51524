"""The blotter stream through real processes: OMS Avro -> workers -> change feed -> WebSocket.

The view invariant is checked against two workers of one deployment: whichever worker a client
is connected to, at quiet its view equals exactly the latest versions matching its filter, across
all partitions (each worker owns only half of them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from app.config import load_settings
from app.producer import OmsProducer
from app.rows import dumps, json_row
from app.serde import build_serde
from tests.conftest import await_condition
from web.blotter.client import BlotterClient, View

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)
ACCOUNTS = ("ACC-1", "ACC-2", "ACC-3")
ORDER_STATUSES = ("PENDING_NEW", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED")
QUOTE_STATUSES = ("ACTIVE", "ACCEPTED", "CANCELED", "EXPIRED")


def order(order_id: str, sequence: int, rng: random.Random) -> dict[str, Any]:
    qty = Decimal(rng.choice(("100", "250.5", "600", "1000")))
    return {
        "eventId": f"E-{order_id}-{sequence}-{rng.random()}",
        "sequence": sequence,
        "eventTime": T0 + dt.timedelta(seconds=sequence),
        "orderId": order_id,
        "clOrdId": f"CL-{order_id}",
        "account": rng.choice(ACCOUNTS),
        "symbol": rng.choice(("AAPL", "MSFT")),
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "DAY",
        "orderQty": qty,
        "price": Decimal("101.25"),
        "stopPx": None,
        "status": rng.choice(ORDER_STATUSES),
        "cumQty": Decimal(0),
        "leavesQty": qty,
        "avgPx": Decimal(0),
        "trader": "alice",
        "desk": "EQ",
        "transactTime": T0,
        "correlationId": None,
        "causationId": None,
        "source": "test",
    }


def quote(quote_id: str, sequence: int, rng: random.Random) -> dict[str, Any]:
    return {
        "eventId": f"E-{quote_id}-{sequence}-{rng.random()}",
        "sequence": sequence,
        "eventTime": T0,
        "quoteId": quote_id,
        "quoteReqId": f"QR-{quote_id}",
        "account": rng.choice(ACCOUNTS),
        "symbol": "AAPL",
        "bidPx": Decimal("100.1"),
        "offerPx": rng.choice((None, Decimal("100.3"))),
        "bidSize": Decimal(100),
        "offerSize": Decimal(100),
        "status": rng.choice(QUOTE_STATUSES),
        "validUntil": T0 + dt.timedelta(minutes=5),
        "correlationId": None,
        "causationId": None,
        "source": "test",
    }


# name -> (object type, filter as sent, the same condition in Python over the source record)
FILTERS: dict[str, tuple[str, Any, Callable[[dict[str, Any]], bool]]] = {
    "all-orders": ("Order", None, lambda r: True),
    "open-acc12": (
        "Order",
        {
            "logicalOperator": "AND",
            "filters": [
                {"fieldName": "account", "operator": "in", "value": ["ACC-1", "ACC-2"]},
                {"fieldName": "status", "operator": "in", "value": ["NEW", "PARTIALLY_FILLED"]},
            ],
        },
        lambda r: r["account"] in ("ACC-1", "ACC-2") and r["status"] in ("NEW", "PARTIALLY_FILLED"),
    ),
    "aggrid-big": (  # an AG Grid column model, sent unchanged
        "Order",
        {"orderQty": {"filterType": "number", "type": "greaterThanOrEqual", "filter": 600}},
        lambda r: r["orderQty"] >= 600,
    ),
    "active-quotes-one-sided": (
        "Quote",
        {
            "logicalOperator": "OR",
            "filters": [
                {"fieldName": "status", "operator": "equals", "value": "ACTIVE"},
                {"fieldName": "offerPx", "operator": "isNull"},
            ],
        },
        lambda r: r["status"] == "ACTIVE" or r["offerPx"] is None,
    ),
}


class Book:
    """What was produced, and the latest version of each object by the version rule."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, object_type: str, key: str, row: dict[str, Any]) -> None:
        held = self.latest.get((object_type, key))
        if held is None or row["sequence"] > held["sequence"]:
            self.latest[(object_type, key)] = row

    def expected(self, name: str) -> dict[str, dict[str, Any]]:
        object_type, _, condition = FILTERS[name]
        return {
            key: orjson.loads(dumps(json_row(row)))
            for (kind, key), row in self.latest.items()
            if kind == object_type and condition(row)
        }


async def produce(producer: OmsProducer, book: Book, rng: random.Random, events: int) -> None:
    for _ in range(events):
        if rng.random() < 0.7:
            key = f"O-{rng.randrange(30)}"
            row = order(key, rng.randint(1, 8), rng)
            await producer.send_record("orders", key, "Order", row)
            book.record("Order", key, row)
        else:
            key = f"Q-{rng.randrange(12)}"
            row = quote(key, rng.randint(1, 8), rng)
            await producer.send_record("quotes", key, "Quote", row)
            book.record("Quote", key, row)
    await producer.flush()


async def subscribe_all(client: BlotterClient) -> dict[str, View]:
    views = {}
    for name, (object_type, raw_filter, _) in FILTERS.items():
        views[name] = await client.subscribe(name, object_type, raw_filter, credits=50)
    return views


def metric(worker_url: str, name: str) -> float:
    with urllib.request.urlopen(worker_url + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def test_view_invariant_on_two_workers(deployment) -> None:
    workers = [deployment(), deployment()]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    settings = load_settings(workers[0].env)
    rng = random.Random(6)
    book = Book()
    async with OmsProducer(settings, build_serde(None)) as producer:
        await produce(producer, book, rng, 120)  # before anyone subscribes: snapshot material
        async with (
            BlotterClient(workers[0].url, "w0") as c0,
            BlotterClient(workers[1].url, "w1") as c1,
        ):
            views = [await subscribe_all(c0), await subscribe_all(c1)]
            await produce(producer, book, rng, 200)  # while subscribed: changes

            def converged() -> bool:
                return all(
                    view.rows == book.expected(name)
                    for client_views in views
                    for name, view in client_views.items()
                )

            await await_condition(converged, 45, "both workers' views to equal the book")
            for client_views in views:
                for view in client_views.values():
                    assert view.regressions == 0
                    assert view.errors == []
                    assert view.snapshot_done.is_set()
            assert sum(len(v.rows) for v in views[0].values()) > 20  # the test saw real data

            # a late subscriber on the other worker gets the same book as a snapshot
            late = await c1.subscribe("late", "Order", FILTERS["open-acc12"][1], credits=1000)
            await late.wait_snapshot()
            assert late.rows == book.expected("open-acc12")
    for worker in workers:
        assert worker.stop() == 0


async def test_stalled_client_is_conflated_and_never_slows_the_others(deployment) -> None:
    worker = deployment(BLOTTER_MAX_PENDING="20")
    worker.start()
    worker.wait_ready()
    settings = load_settings(worker.env)
    rng = random.Random(7)
    book = Book()
    async with (
        OmsProducer(settings, build_serde(None)) as producer,
        BlotterClient(worker.url, "fast") as fast_client,
        BlotterClient(worker.url, "stalled") as stalled_client,
    ):
        fast = await fast_client.subscribe("all-orders", "Order", credits=100)
        stalled = await stalled_client.subscribe("s", "Order", credits=3, auto_credit=False)
        await fast.wait_snapshot()
        await stalled.wait_snapshot()
        conflated_before = metric(worker.url, "blotter_ws_rows_conflated_total")

        # 15 orders, 8 versions each, in random order: more events than the stalled client's
        # bound, fewer distinct keys.
        versions = [(f"S-{k}", seq) for k in range(15) for seq in range(1, 9)]
        rng.shuffle(versions)
        for key, seq in versions:
            row = order(key, seq, rng)
            await producer.send_record("orders", key, "Order", row)
            book.record("Order", key, row)
        await producer.flush()
        await await_condition(
            lambda: fast.rows == book.expected("all-orders"), 20, "the fast client's view"
        )
        assert stalled.received == 3  # exactly its credits, although 120 versions went by
        assert stalled_client.frames >= 2 and not stalled.errors

        await stalled_client.request("s", 1000)
        await await_condition(
            lambda: stalled.rows == book.expected("all-orders"), 10, "the stalled view"
        )
        assert stalled.received <= 3 + 15  # one conflated entry per key after the grant
        assert stalled.regressions == 0
        assert metric(worker.url, "blotter_ws_rows_conflated_total") > conflated_before

        # past the bound without credit: SLOW_CONSUMER for that subscription only
        new_orders = {"fieldName": "orderId", "operator": "startsWith", "value": "X-"}
        bounded = await stalled_client.subscribe(
            "b", "Order", new_orders, credits=0, auto_credit=False
        )
        await bounded.wait_snapshot()  # empty: it ends without credit
        for k in range(25):
            row = order(f"X-{k}", 1, rng)
            await producer.send_record("orders", f"X-{k}", "Order", row)
            book.record("Order", f"X-{k}", row)
        await producer.flush()
        await asyncio.wait_for(bounded.closed.wait(), 10)
        assert [e["code"] for e in bounded.errors] == ["SLOW_CONSUMER"]
        await await_condition(
            lambda: fast.rows == book.expected("all-orders")
            and stalled.rows == book.expected("all-orders"),
            10,
            "the other subscriptions to keep up",
        )
        assert await stalled_client.ping() < 5
        assert metric(worker.url, "blotter_ws_slow_consumer_closes_total") == 1
    assert worker.stop() == 0


async def test_malformed_messages_get_typed_errors_over_a_real_socket(deployment) -> None:
    worker = deployment(BLOTTER_WS_MAX_MESSAGE_BYTES="4096")
    worker.start()
    worker.wait_ready()
    cases = [
        ("{not json", "BAD_MESSAGE"),
        ('{"type": "subscribe", "id": "s1", "objectType": "Nope"}', "UNKNOWN_OBJECT_TYPE"),
        (orjson.dumps({"type": "subscribe", "id": "s2", "objectType": "Order",
                       "filter": {"fieldName": "x", "operator": "equals", "value": 1}}).decode(),
         "UNKNOWN_FIELD"),
        (orjson.dumps({"type": "subscribe", "id": "s3", "objectType": "Order",
                       "filter": {"fieldName": "orderQty", "operator": "contains",
                                  "value": "1"}}).decode(),
         "INVALID_FILTER"),
        ('{"type": "request", "id": "ghost", "n": 1}', "UNKNOWN_SUBSCRIPTION"),
        ('{"type": "request", "id": "ok", "n": -4}', "BAD_MESSAGE"),
        ('{"type": "subscribe", "id": "ok", "objectType": "Order"}', "DUPLICATE_SUBSCRIPTION"),
        ('{"type": "dance"}', "BAD_MESSAGE"),
    ]
    async with BlotterClient(worker.url, "errors") as client:
        assert client.welcome is not None and client.welcome["ready"] is True
        ok = await client.subscribe("ok", "Order")
        await ok.wait_snapshot()
        for raw, code in cases:
            await client.send(raw)
            error = await client.next_error()
            assert error["code"] == code, raw
            assert await client.ping() < 5  # the connection survived
        await client._ws.send_bytes(b'{"type": "ping"}')
        assert (await client.next_error())["code"] == "BAD_MESSAGE"
        assert not client.closed

        # too big for the configured maximum: closed with 1009, by protocol
        await client.send({"type": "ping", "id": "x" * 5000})
        await await_condition(lambda: client.closed, 10, "the oversized message to close")
        assert client.close_code == 1009

    async with aiohttp.ClientSession() as http:
        resp = await http.get(worker.url + "/v1/trade-blotter/stream?blotterId=bad%20id")
        assert resp.status == 400
    assert worker.stop() == 0


async def test_entitlements_of_a_jwt_caller_restrict_every_view(deployment) -> None:
    secret = "blotter-stream-test-secret-of-sufficient-length"
    worker = deployment(
        AUTH_MODE="jwt",
        AUTH_JWT_SECRET=secret,
        AUTH_JWT_ISSUER="tests",
        AUTH_JWT_AUDIENCE="blotter",
    )
    worker.start()
    worker.wait_ready()

    def token(accounts: list[str]) -> str:
        claims = {"sub": "trader", "accounts": accounts, "exp": int(time.time()) + 600,
                  "iss": "tests", "aud": "blotter"}
        return jwt.encode(claims, secret, algorithm="HS256")

    rng = random.Random(8)
    book = Book()
    async with OmsProducer(load_settings(worker.env), build_serde(None)) as producer:
        await produce(producer, book, rng, 60)
    everything = book.expected("all-orders")
    mine = {key: row for key, row in everything.items() if row["account"] == "ACC-1"}
    assert mine and len(mine) < len(everything)

    async with BlotterClient(worker.url, "acc1", token=token(["ACC-1"])) as client:
        view = await client.subscribe("all", "Order")  # asks for everything
        await await_condition(lambda: view.rows == mine, 20, "the caller's own orders")

    async with aiohttp.ClientSession() as http:
        stream = worker.url + "/v1/trade-blotter/stream?blotterId=b"
        # browsers send the token as a subprotocol, which must be echoed for the socket to open
        async with http.ws_connect(stream, protocols=("bearer", token(["*"]))) as ws:
            assert ws.protocol == "bearer"
            assert orjson.loads((await ws.receive()).data)["type"] == "welcome"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(stream)
        assert refused.value.status == 401
    assert worker.stop() == 0
