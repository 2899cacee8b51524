"""Output records of a batch leave as one Kafka batch per partition, in the order queued, and a
failed send loses nothing (ADR 0013)."""

from __future__ import annotations

import asyncio
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
        self.deliveries: list[asyncio.Future[Any]] = []  # one per batch, as the client's
        self.room: asyncio.Event | None = None  # when set up, the next send waits for room
        self.known_topics = {"changes"}  # the client's metadata
        self._metadata = SimpleNamespace(partitions_for_topic=self.partitions_for_topic)
        self.client = SimpleNamespace(_wait_on_metadata=self.wait_on_metadata)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0, 1} if topic in self.known_topics else None

    async def wait_on_metadata(self, topic: str) -> set[int]:
        await asyncio.sleep(0)  # a metadata request
        self.known_topics.add(topic)
        return {0, 1}

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

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.room is not None:
            room, self.room = self.room, None
            await room.wait()
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise ConnectionError("broker went away")
        self.sent.append((partition, list(batch.keys)))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


def outputs(client: Client, topic: str = "changes", **options: Any) -> OutputBatches:
    def key_partition(topic: str, key: bytes) -> SimpleNamespace:
        # aiokafka's partitioner fails on a topic missing from the client's metadata
        assert client.partitions_for_topic(topic) is not None, f"no metadata for {topic}"
        return SimpleNamespace(partition=int(key[-1:]) % 2)

    producer = SimpleNamespace(_producer=client, key_partition=key_partition)
    return OutputBatches(SimpleNamespace(producer=producer), topic, **options)


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


async def test_a_topic_the_client_has_not_used_yet_is_looked_up_before_partitioning() -> None:
    client = Client()
    batches = outputs(client, "trade-applied")
    batches.add(b"k1", b"value", [])
    await batches.send()
    assert client.sent == [(1, [b"k1"])]


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


async def test_records_queued_while_a_call_fails_follow_the_ones_it_left() -> None:
    client = Client(batch_size=300, fail_at=0)
    batches = outputs(client)
    keys = [f"k{n}1".encode() for n in range(10)]
    for key in keys[:6]:
        batches.add(key, b"x" * 50, [])
    room = client.room = asyncio.Event()
    failing = asyncio.create_task(batches.send())
    await asyncio.sleep(0)  # the call waits for room, then fails
    for key in keys[6:]:
        batches.add(key, b"x" * 50, [])
    room.set()
    with pytest.raises(ConnectionError):
        await failing
    await batches.send()
    assert [key for _, sent in client.sent for key in sent] == keys


async def test_a_call_made_while_another_waits_for_room_sends_after_it() -> None:
    """A changelog's batches are sent from every hand-over of the producer buffer; two may
    overlap when the client has no room, and a partition's records must keep their order."""
    client = Client(batch_size=300)
    batches = outputs(client)
    keys = [f"k{n}1".encode() for n in range(8)]  # two batches on partition 1
    for key in keys[:7]:
        batches.add(key, b"x" * 50, [])
    room = client.room = asyncio.Event()
    first = asyncio.create_task(batches.send())
    await asyncio.sleep(0)  # the first call now waits for room
    batches.add(keys[7], b"x" * 50, [])
    second = asyncio.create_task(batches.send())
    await asyncio.sleep(0)
    room.set()
    await asyncio.gather(first, second)
    assert [key for _, sent in client.sent for key in sent] == keys


async def test_an_explicit_partition_overrides_the_partitioner() -> None:
    client = Client()
    batches = outputs(client)
    batches.add(b"k1", b"v", [], partition=3)
    batches.add(b"k2", b"v", [])
    await batches.send()
    assert sorted(client.sent) == [(0, [b"k2"]), (3, [b"k1"])]


async def test_each_delivered_batch_reports_the_offset_of_its_last_record() -> None:
    client = Client(batch_size=300)
    delivered: list[tuple[Any, int]] = []
    batches = outputs(client, on_delivered=lambda tp, offset: delivered.append((tp, offset)))
    failures = metrics.SEND_FAILURES.labels(topic="changes")
    failed_before = failures._value.get()
    for n in range(8):
        batches.add(f"k{n}1".encode(), b"x" * 50, [])
    await batches.send()
    first, *rest = client.deliveries
    counts = [len(sent) for _, sent in client.sent]
    assert rest and counts[0] > 1
    first.set_result(SimpleNamespace(topic_partition=("changes", 1), offset=40))
    for delivery in rest:
        delivery.set_exception(ConnectionError("not acknowledged"))
    await asyncio.sleep(0)  # done callbacks run on the next loop pass
    assert delivered == [(("changes", 1), 40 + counts[0] - 1)]
    assert failures._value.get() - failed_before == sum(counts[1:])
