"""Output records of a batch leave as one Kafka batch per partition, in the order queued, and a
failed send loses nothing (ADR 0013)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from app import metrics
from app.output_batches import OutputBatches


class Client:
    """The aiokafka producer's batch API: real batch builders, recorded sends."""

    def __init__(self, batch_size: int = 16 * 1024, fail_at: int | None = None) -> None:
        self.batch_size = batch_size
        self.fail_at = fail_at
        self.sent: list[tuple[int, list[bytes]]] = []

    def create_batch(self) -> BatchBuilder:
        batch = BatchBuilder(self.batch_size, 0)
        batch.keys = []  # type: ignore[attr-defined]
        original = batch.append

        def append(**record: Any) -> Any:
            result = original(**record)
            if result is not None:
                batch.keys.append(record["key"])  # type: ignore[attr-defined]
            return result

        batch.append = append  # type: ignore[method-assign]
        return batch

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> None:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise ConnectionError("broker went away")
        self.sent.append((partition, list(batch.keys)))


def outputs(client: Client) -> OutputBatches:
    producer = SimpleNamespace(
        _producer=client,
        key_partition=lambda topic, key: SimpleNamespace(partition=int(key[-1:]) % 2),
    )
    return OutputBatches(SimpleNamespace(producer=producer), "changes")


def published() -> float:
    return metrics.EVENTS_PUBLISHED.labels(topic="changes")._value.get()


async def test_one_batch_per_partition_in_the_order_queued() -> None:
    client = Client()
    batches = outputs(client)
    before = published()
    for key in (b"k1", b"k2", b"k3", b"k4", b"k5"):
        batches.add(key, b"value", [("object.type", b"Order")])
    await batches.send()
    assert sorted(client.sent) == [(0, [b"k2", b"k4"]), (1, [b"k1", b"k3", b"k5"])]
    assert published() - before == 5 and len(batches) == 0
    await batches.send()
    assert len(client.sent) == 2, "nothing queued, nothing sent"


async def test_a_full_batch_is_sent_and_the_rest_follows_in_order() -> None:
    client = Client(batch_size=300)  # a few 50-byte records per batch
    batches = outputs(client)
    keys = [f"k{n}1".encode() for n in range(10)]  # all on partition 1
    for key in keys:
        batches.add(key, b"x" * 50, [])
    await batches.send()
    assert len(client.sent) > 1 and {partition for partition, _ in client.sent} == {1}
    assert [key for _, sent in client.sent for key in sent] == keys


async def test_records_not_yet_in_the_client_are_sent_by_the_next_call() -> None:
    client = Client(batch_size=300, fail_at=1)
    batches = outputs(client)
    keys = [f"k{n}1".encode() for n in range(10)]
    for key in keys:
        batches.add(key, b"x" * 50, [])
    with pytest.raises(ConnectionError):
        await batches.send()
    in_client = len(client.sent[0][1])
    assert len(batches) == len(keys) - in_client, "the first batch is in the client"
    await batches.send()
    assert [key for _, sent in client.sent for key in sent] == keys, "each exactly once"


async def test_a_record_larger_than_a_batch_goes_alone() -> None:
    client = Client(batch_size=100)
    batches = outputs(client)
    batches.add(b"k1", b"x" * 1000, [])
    batches.add(b"k3", b"y", [])
    await batches.send()
    assert client.sent == [(1, [b"k1"]), (1, [b"k3"])]
