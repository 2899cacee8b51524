"""Seeking to the committed offsets re-reads a partition that has no commit yet (what Faust
does after every rebalance): records fetched and dropped must be fetched again."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app import faust_fixes
from app.broker import EmbeddedBroker, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_partition_without_commit_is_read_again_from_its_start(
    broker: EmbeddedBroker,
) -> None:
    faust_fixes.install()
    tag = uuid.uuid4().hex[:8]
    topic = f"seek-{tag}"
    await create_topics(broker.bootstrap, [topic], 1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"m{i}".encode(), partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"seek-group-{tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        first: list[int] = []
        while len(first) < 3:  # fetched, never committed, then "dropped"
            batch = await consumer.getmany(timeout_ms=2000)
            first += [r.offset for records in batch.values() for r in records]
        committed = await consumer.seek_to_committed()
        # no commit: the start offset is returned, the position commits go on from
        assert committed == {TopicPartition(topic, 0): 0}
        state = consumer._subscription.subscription.assignment.state_value(TopicPartition(topic, 0))
        # Faust's livelock check reads every position; one awaiting a reset crashes the consumer
        assert state.has_valid_position and state.position == 0
        again: list[int] = []
        while len(again) < 3:
            batch = await consumer.getmany(timeout_ms=2000)
            assert batch, "nothing fetched after the seek: the partition was skipped"
            again += [r.offset for records in batch.values() for r in records]
        assert again == first == [0, 1, 2]
    finally:
        await consumer.stop()
