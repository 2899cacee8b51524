"""Output records of an agent's batch, produced as one Kafka batch per partition.

Faust sends every record on its own: a FutureMessage, the client's send future and the callbacks
chained on them (sensors, delivery reports) run per record, and asyncio's callback handling was
10.5% of the ingest profile. The change feed's records need none of that per record: they are
produced after the batch's changelog records were handed to the client (ADR 0007, ADR 0008),
and Faust's commit flushes the whole client (`Producer.flush`) before it commits the batch's
offsets, so they are delivered before their input counts as processed (ADR 0013). Tables'
changelog records go the same way (`tables.common`, ADR 0014), registered here per app so every
hand-over of Faust's producer buffer sends them first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.structs import TopicPartition

from app import metrics

Headers = list[tuple[str, bytes]]  # a list: aiokafka's batch builder refuses a tuple
Delivered = Callable[[TopicPartition, int], None]
Record = tuple[bytes | None, bytes | None, Headers]

log = logging.getLogger(__name__)


class OutputBatches:
    """Records for one topic, queued during a batch and produced when it ends.

    `on_delivered(tp, last_offset)` runs once per delivered Kafka batch with the offset of its
    last record; a batch the broker refused is logged and counted (`SEND_FAILURES`).
    """

    def __init__(
        self,
        app: Any,
        topic: str,
        *,
        on_delivered: Delivered | None = None,
        count_published: bool = True,
    ) -> None:
        self.app = app
        self.topic = topic
        self.on_delivered = on_delivered
        self._pending: list[tuple[int | None, Record]] = []
        self._published = metrics.EVENTS_PUBLISHED.labels(topic=topic) if count_published else None
        self._failures = metrics.SEND_FAILURES.labels(topic=topic)
        self._sending = asyncio.Lock()

    def add(
        self, key: bytes | None, value: bytes | None, headers: Headers, partition: int | None = None
    ) -> None:
        """Queue a record for `partition`, or for the partition the client's partitioner gives
        its key (so a key always lands where `Topic.send` would put it)."""
        self._pending.append((partition, (key, value, headers)))

    def __len__(self) -> int:
        return len(self._pending)

    async def send(self) -> None:
        """Produce what was queued, per partition in the order queued. Records stay queued until
        their batch is in the client, so a failed call can be repeated; calls that overlap (the
        client waiting for room) send one after the other, so a partition's order holds."""
        if not self._pending:
            return
        async with self._sending:
            await self._send_pending()

    async def _send_pending(self) -> None:
        if not self._pending:
            return
        faust_producer = self.app.producer
        client = faust_producer._producer  # the aiokafka producer Faust started and flushes
        if (
            any(partition is None for partition, _ in self._pending)
            and client._metadata.partitions_for_topic(self.topic) is None
        ):
            # The key partitioner needs the topic's partitions, which the client learns only
            # when asked for the topic (a first send to it, as `send_batch` would ask later).
            await client.client._wait_on_metadata(self.topic)
        by_partition: dict[int, list[Record]] = {}
        for partition, record in self._pending:
            if partition is None:
                partition = faust_producer.key_partition(self.topic, record[0]).partition
            by_partition.setdefault(partition, []).append(record)
        self._pending = []
        try:
            for partition in list(by_partition):
                records = by_partition[partition]
                while records:  # an empty batch takes any first record, so each pass takes one
                    batch = client.create_batch()
                    taken = 0
                    for key, value, headers in records:
                        if batch.append(key=key, value=value, timestamp=None, headers=headers):
                            taken += 1
                        else:
                            break
                    delivery = await client.send_batch(batch, self.topic, partition=partition)
                    del records[:taken]
                    if self._published is not None:
                        self._published.inc(taken)
                    if delivery is not None:
                        delivery.add_done_callback(self._delivered_callback(taken))
                del by_partition[partition]
        finally:
            # not in the client: sent next time, ahead of what was queued since
            self._pending[:0] = [
                (partition, record)
                for partition, records in by_partition.items()
                for record in records
            ]

    def _delivered_callback(self, count: int) -> Callable[[asyncio.Future[Any]], None]:
        def delivered(delivery: asyncio.Future[Any]) -> None:
            if delivery.cancelled():
                return
            error = delivery.exception()
            if error is not None:
                self._failures.inc(count)
                log.error("%d records for %s were not delivered: %s", count, self.topic, error)
                return
            metadata = delivery.result()  # None when the producer does not wait for acks
            if self.on_delivered is not None and metadata is not None:
                self.on_delivered(metadata.topic_partition, metadata.offset + count - 1)

        return delivered


def changelog_batches(app: Any) -> list[OutputBatches]:
    """The app's changelog batches (one per table that batches its changelog)."""
    registered = getattr(app, "_changelog_batches", None)
    if registered is None:
        registered = []
        app._changelog_batches = registered
    return registered


async def send_changelog_batches(app: Any) -> None:
    """Hand every table's queued changelog records to the client, before anything that describes
    the state they carry (ADR 0007)."""
    for batches in getattr(app, "_changelog_batches", ()):
        if batches:  # the buffer's task calls this per record it sends: skip the empty ones
            await batches.send()
