"""Trades through Kafka into positions: duplicates, a backdated trade, a worker kill -9 in the
middle, and the REST answer against the independent reference model replayed in economic order."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from aiokafka import AIOKafkaConsumer

from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import await_condition
from tests.integration.test_orders_slice import get_json
from tests.unit.reference_lots import RefTrade, run_reference

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BUSINESS_DATE = dt.date(2026, 11, 20)


def trade(trade_id: str, side: str, qty: int, price: str, day: dt.date, ms: int) -> dict:
    return {
        "eventId": f"E-{trade_id}",
        "sequence": 1,
        "eventTime": dt.datetime(2026, 11, 20, 15, tzinfo=dt.UTC),
        "tradeId": trade_id,
        "account": "ACC-9",
        "symbol": "MSFT",
        "side": side,
        "quantity": Decimal(qty),
        "price": Decimal(price),
        "tradeTime": dt.datetime.combine(day, dt.time(10), dt.UTC) + dt.timedelta(milliseconds=ms),
        "effectiveDate": day,
        "contractId": None,
        "correlationId": f"corr-{trade_id}",
        "causationId": None,
        "source": "test",
    }


def reference(trades: list[dict]) -> dict:
    ref = [
        RefTrade(
            t["tradeId"], t["side"], Fraction(str(t["quantity"])), Fraction(str(t["price"])),
            t["effectiveDate"], int(t["tradeTime"].timestamp() * 1000),
        )
        for t in trades
    ]
    ref.sort(key=lambda r: (r.effective_date, r.trade_time, r.trade_id))
    book = run_reference(ref, "FIFO")
    return {
        "quantity": book.quantity,
        "realized": book.realized,
        "lots": [(lot.lot_id, lot.quantity, lot.cost) for lot in book.lots],
    }


def as_fraction(text: str) -> Fraction:
    return Fraction(Decimal(text))


async def test_positions_match_reference_after_duplicates_backdating_and_kill9(
    deployment,
) -> None:
    worker = deployment(BUSINESS_DATE=BUSINESS_DATE.isoformat())
    worker.start()
    worker.wait_ready()
    settings = load_settings(worker.env)
    serde = build_serde(None)
    rng = random.Random(11)

    trades = []
    for i in range(60):
        day = BUSINESS_DATE - dt.timedelta(days=rng.randint(0, 4))
        side = "BUY" if i < 5 or rng.random() < 0.6 else "SELL"
        price = f"{rng.randint(90, 110)}.{i % 100:02d}"
        trades.append(trade(f"T{i:03d}", side, rng.randint(1, 20) * 10, price, day, i * 1000))
    deliveries = trades + rng.sample(trades, 15)  # upstream resends
    rng.shuffle(deliveries)  # arrival order != economic order: many are backdated

    async def produce(batch: list[dict]) -> None:
        async with OmsProducer(settings, serde) as producer:
            for t in batch:
                await producer.send_record("trades", "ACC-9:MSFT", "Trade", t)
            await producer.flush()

    half = len(deliveries) // 2
    await produce(deliveries[:half])
    worker.kill()  # mid-stream, before it has necessarily committed
    worker.start()
    worker.wait_ready(30)
    await produce(deliveries[half:])

    expected = reference(trades)
    url = f"{worker.url}/v1/positions/ACC-9:MSFT"

    last: list = []

    def settled() -> bool:
        status, body = get_json(url)
        last[:] = [status, body]
        return (
            status == 200
            and body["status"] == "RECONCILED"
            and as_fraction(body["quantity"]) == expected["quantity"]
            and len(body["lots"]) == len(expected["lots"])
            and as_fraction(body["realizedPnl"]) == expected["realized"]
        )

    try:
        await await_condition(settled, 90, "position reconciled to the reference")
    except AssertionError:
        status, body = last
        raise AssertionError(
            f"{status} {body.get('status')} qty={body.get('quantity')} "
            f"expected={expected['quantity']} lots={len(body.get('lots', []))}/"
            f"{len(expected['lots'])} realized={body.get('realizedPnl')} "
            f"expected={float(expected['realized'])}"
        ) from None
    _, body = get_json(url)
    got = [(lot["lotId"], as_fraction(lot["quantity"]), as_fraction(lot["costPrice"]))
           for lot in body["lots"]]
    assert got == expected["lots"]

    _, history = get_json(url + "/events")
    applied = [e["tradeId"] for e in history["events"] if e["type"] != "CORRECTION"]
    assert sorted(applied) == sorted(t["tradeId"] for t in trades), "a trade applied twice or lost"
    versions = [e["version"] for e in history["events"]]
    assert versions == sorted(set(versions)), "versions must be unique and increasing"
    assert body["version"] == versions[-1]
    assert any(e["type"] == "PROVISIONAL_TRADE_APPLIED" for e in history["events"])
    assert any(e["type"] == "CORRECTION" for e in history["events"])

    # TradeApplied / ProvisionalTradeApplied: exactly one per trade id (at-least-once transport
    # may repeat a message after kill -9; a repeat must carry the same version).
    consumer = AIOKafkaConsumer(
        settings.topics.trade_applied, settings.topics.provisional,
        bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: dict[str, set[int]] = {}
    try:
        async def all_outputs() -> bool:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    row = serde.decode(
                        record.value,
                        "TradeApplied"
                        if record.topic == settings.topics.trade_applied
                        else "ProvisionalTradeApplied",
                    )
                    seen.setdefault(row["tradeId"], set()).add(row["version"])
            return len(seen) == len(trades)

        await await_condition(all_outputs, 30, "an output event for every trade")
    finally:
        await consumer.stop()
    assert all(len(v) == 1 for v in seen.values()), "a trade was applied at two versions"
    # A price move republishes the position's row (unrealized P&L, exposure) on the feed.
    async with OmsProducer(settings, serde) as producer:
        await producer.send_record("market_prices", "MSFT", "MarketPrice", {
            "eventId": "P-1", "sequence": 1, "eventTime": dt.datetime.now(dt.UTC),
            "symbol": "MSFT", "price": Decimal("123.45"), "asOf": dt.datetime.now(dt.UTC),
            "correlationId": None, "causationId": None, "source": "test",
        })
        await producer.flush()

    def row_priced() -> bool:
        items = get_json(f"{worker.url}/v1/positions?account=ACC-9")[1]["items"]
        return bool(items) and items[0]["lastPrice"] == "123.45"

    await await_condition(row_priced, 30, "the position row repriced")
    row = get_json(f"{worker.url}/v1/positions?account=ACC-9")[1]["items"][0]
    _, exact = get_json(url)
    assert row["unrealizedPnl"] == exact["unrealizedPnl"]
    expected_exposure = Decimal("123.45") * Decimal(row["quantity"])
    assert Decimal(row["exposure"]) == Decimal(exact["exposure"]) == expected_exposure
    listed = get_json(f"{worker.url}/v1/positions?account=ACC-9")[1]["items"]
    assert [p["positionKey"] for p in listed] == ["ACC-9:MSFT"]
    assert get_json(f"{worker.url}/v1/positions?account=NOPE")[1]["items"] == []
    assert worker.stop() == 0
