"""The latest market price of every symbol, on every worker.

Positions are partitioned by positionKey, prices by symbol, so the worker that owns a position
rarely owns its symbol's price partition. Each worker therefore reads *all* partitions of
`market-prices` with a plain consumer outside the consumer group and keeps the highest-sequence
price per symbol in memory (a few hundred bytes per symbol). Validation and dead-lettering of
prices is the market-price agent's job; here an undecodable or invalid price is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from decimal import Decimal

from app.errors import BlotterError, TransientError
from app.retry import retry_transient
from app.serde import AvroSerde

log = logging.getLogger(__name__)

PriceListener = Callable[[str, Decimal], None]


class PriceBook:
    """symbol -> (sequence, price); listeners are called on every accepted change."""

    def __init__(self) -> None:
        self._prices: dict[str, tuple[int, Decimal]] = {}
        self.listeners: list[PriceListener] = []

    def price(self, symbol: str) -> Decimal | None:
        entry = self._prices.get(symbol)
        return entry[1] if entry else None

    def sequence(self, symbol: str) -> int:
        """The sequence of the symbol's latest price (0 before any)."""
        entry = self._prices.get(symbol)
        return entry[0] if entry else 0

    def update(self, symbol: str, sequence: int, price: Decimal) -> bool:
        """Apply one price by the version rule; True when it changed the book."""
        current = self._prices.get(symbol)
        if current is not None and sequence <= current[0]:
            return False
        self._prices[symbol] = (sequence, price)
        for listener in self.listeners:
            listener(symbol, price)
        return True

    def apply_message(self, serde: AvroSerde, value: bytes | None) -> bool:
        """Apply one encoded price; False when invalid. TransientError propagates: the caller
        retries the same record, so no price is dropped during a registry outage."""
        try:
            row = serde.decode(value, "MarketPrice")
            price = row["price"]
            if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                return False
            return self.update(row["symbol"], row["sequence"], price)
        except TransientError:
            raise
        except (BlotterError, KeyError, TypeError):
            return False

    def __len__(self) -> int:
        return len(self._prices)


async def follow_prices(
    book: PriceBook, serde: AvroSerde, bootstrap: str, topic: str
) -> None:
    """Consume every partition of `topic` from the beginning into `book`, forever."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            await asyncio.sleep(0.5)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    await _apply_retrying(book, serde, topic, record.value)
    except asyncio.CancelledError:
        raise
    finally:
        await consumer.stop()


async def _apply_retrying(
    book: PriceBook, serde: AvroSerde, topic: str, value: bytes | None
) -> None:
    async def apply() -> None:
        if serde.needs_fetch(value):
            await serde.fetch_schema(value)  # off the event loop
        book.apply_message(serde, value)

    with contextlib.suppress(BlotterError):  # poison price: the market-price agent DLQs it
        await retry_transient(apply, topic)
