"""The first vertical slice through real processes: OMS Avro -> worker -> table -> REST."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from decimal import Decimal

import pytest

from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import await_condition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def order(order_id: str, sequence: int, status: str, qty: str = "100") -> dict:
    now = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)
    return {
        "eventId": f"E-{order_id}-{sequence}",
        "sequence": sequence,
        "eventTime": now,
        "orderId": order_id,
        "clOrdId": f"CL-{order_id}",
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "DAY",
        "orderQty": Decimal(qty),
        "price": Decimal("101.25"),
        "stopPx": None,
        "status": status,
        "cumQty": Decimal(0),
        "leavesQty": Decimal(qty),
        "avgPx": Decimal(0),
        "trader": "alice",
        "desk": "EQ",
        "transactTime": now,
        "correlationId": "corr-1",
        "causationId": None,
        "source": "test",
    }


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def test_latest_order_version_served_over_rest(deployment) -> None:
    worker = deployment()
    worker.start()
    worker.wait_ready()
    settings = load_settings(worker.env)
    serde = build_serde(None)
    async with OmsProducer(settings, serde) as producer:
        # Out of order and duplicated: sequence 3 must win.
        for seq, status in ((1, "PENDING_NEW"), (3, "FILLED"), (2, "NEW"), (3, "FILLED")):
            await producer.send_record("orders", "ORD-1", "Order", order("ORD-1", seq, status))
        await producer.flush()

    async def latest_is_filled() -> bool:
        status, body = get_json(worker.url + "/v1/objects/Order/ORD-1")
        return status == 200 and body.get("sequence") == 3

    await await_condition(latest_is_filled, 60, "order ORD-1 at sequence 3")
    status, body = get_json(worker.url + "/v1/objects/Order/ORD-1")
    assert body["status"] == "FILLED"
    assert body["price"] == "101.25"  # decimals as exact strings
    assert body["orderQty"] == "100"
    assert body["transactTime"] == "2026-11-20T14:00:00.000Z"
    status, body = get_json(worker.url + "/v1/objects/Order/NOPE")
    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"
    assert worker.stop() == 0
