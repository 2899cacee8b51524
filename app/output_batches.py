"""Output records of an agent's batch, produced as one Kafka batch per partition.

Faust sends every record on its own: a FutureMessage, the client's send future and the callbacks
chained on them (sensors, delivery reports) run per record, and asyncio's callback handling was
10.5% of the ingest profile. The change feed's records need none of that per record: they are
produced after the batch's changelog records were handed to the client (ADR 0007, ADR 0008),
and Faust's commit flushes the whole client (`Producer.flush`) before it commits the batch's
offsets, so they are delivered before their input counts as processed (ADR 0013).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app import metrics

Headers = Sequence[tuple[str, bytes]]


class OutputBatches:
    """Records for one topic, queued during a batch and produced when it ends."""

    def __init__(self, app: Any, topic: str) -> None:
        self.app = app
        self.topic = topic
        self._pending: list[tuple[bytes, bytes, Headers]] = []
        self._published = metrics.EVENTS_PUBLISHED.labels(topic=topic)

    def add(self, key: bytes, value: bytes, headers: Headers) -> None:
        self._pending.append((key, value, headers))

    def __len__(self) -> int:
        return len(self._pending)

    async def send(self) -> None:
        """Produce what was queued: per partition in the order queued, placed by the client's
        own partitioner (so a key always lands where `Topic.send` would put it). Records stay
        queued until their batch is in the client, so a failed call can be repeated."""
        if not self._pending:
            return
        faust_producer = self.app.producer
        client = faust_producer._producer  # the aiokafka producer Faust started and flushes
        by_partition: dict[int, list[tuple[bytes, bytes, Headers]]] = {}
        for record in self._pending:
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
                    await client.send_batch(batch, self.topic, partition=partition)
                    del records[:taken]
                    self._published.inc(taken)
                del by_partition[partition]
        finally:
            for records in by_partition.values():  # not in the client: send them next time
                self._pending.extend(records)
