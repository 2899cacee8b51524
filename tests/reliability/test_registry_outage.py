"""A worker restarted while the schema registry is down: it must stay responsive, lose nothing,
and show the right market prices once the registry is back (no new price arrives after it)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import await_condition
from tests.integration.test_orders_slice import get_json
from tests.reliability.registry_standin import RegistryStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DAY = dt.date(2026, 11, 20)
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
PRICES_PER_SYMBOL = 40


@pytest.fixture
def registry() -> Iterator[RegistryStandIn]:
    standin = RegistryStandIn()
    standin.start()
    yield standin
    standin.stop()


def price(symbol: str, sequence: int) -> dict:
    stamp = dt.datetime(2026, 11, 20, 14, tzinfo=dt.UTC) + dt.timedelta(seconds=sequence)
    return {
        "eventId": f"P-{symbol}-{sequence}",
        "sequence": sequence,
        "eventTime": stamp,
        "symbol": symbol,
        "price": Decimal(100 + sequence) / 4,
        "asOf": stamp,
        "correlationId": None,
        "causationId": None,
        "source": "test",
    }


def buy(symbol: str) -> dict:
    stamp = dt.datetime(2026, 11, 20, 15, tzinfo=dt.UTC)
    return {
        "eventId": f"E-{symbol}",
        "sequence": 1,
        "eventTime": stamp,
        "tradeId": f"T-{symbol}",
        "account": "ACC",
        "symbol": symbol,
        "side": "BUY",
        "quantity": Decimal(10),
        "price": Decimal(20),
        "tradeTime": stamp,
        "effectiveDate": DAY,
        "contractId": None,
        "correlationId": None,
        "causationId": None,
        "source": "test",
    }


async def test_restart_during_registry_outage(deployment, registry: RegistryStandIn) -> None:
    worker = deployment(SCHEMA_REGISTRY_URL=registry.url, BUSINESS_DATE=DAY.isoformat())
    worker.start()
    worker.wait_ready()
    async with OmsProducer(load_settings(worker.env), build_serde(None)) as producer:
        for sequence in range(1, PRICES_PER_SYMBOL + 1):
            for symbol in SYMBOLS:
                await producer.send_record(
                    "market_prices", symbol, "MarketPrice", price(symbol, sequence)
                )
        for symbol in SYMBOLS:
            await producer.send_record("trades", f"ACC:{symbol}", "Trade", buy(symbol))
        await producer.flush()
    latest = {s: str(price(s, PRICES_PER_SYMBOL)["price"]) for s in SYMBOLS}

    def prices_shown() -> dict[str, str | None]:
        shown = {}
        for symbol in SYMBOLS:
            status, body = get_json(f"{worker.url}/v1/positions/ACC:{symbol}")
            shown[symbol] = body.get("lastPrice") if status == 200 else None
        return shown

    def latest_prices_shown() -> bool:
        shown = prices_shown()
        return all(
            shown[s] is not None and Decimal(shown[s]) == Decimal(latest[s]) for s in SYMBOLS
        )

    await await_condition(latest_prices_shown, 60, "latest prices on every position")

    registry.outage(True)
    assert worker.stop() == 0
    worker.start()  # a fresh process: no schema cached
    started = time.monotonic()
    try:
        ready_s = worker.wait_ready(30)  # tables recover from Kafka: no registry needed
        # Keep the registry down until the worker has tried to read a price through it.
        await await_condition(
            lambda: registry.count_path(503, "/schemas/ids/6") > 0, 30, "a MarketPrice lookup"
        )
    finally:
        answered_503 = registry.count(503)
        registry.outage(False)
    assert answered_503 > 0, "the outage was not felt"
    assert ready_s < 30, f"not ready {time.monotonic() - started:.0f} s into the outage"

    # No new price is produced: the book must hold the latest ones it read during the outage.
    await await_condition(
        latest_prices_shown, 30, f"latest prices after the outage (shown: {prices_shown()})"
    )
    assert worker.stop() == 0
