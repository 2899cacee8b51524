"""Re-submitting dead-lettered messages to their input topic, each at most once."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.config import Settings
from app.dlq import DLQ_HEADERS


async def replay_dead_letters(settings: Settings, topic: str, limit: int | None = None) -> int:
    """Copy `<topic>-dlq` records (up to the end offsets seen at start) back to `topic`, with
    their original key, value and headers; commit progress after each flushed batch."""
    dlq = settings.topics.dlq(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{settings.app_id}-dlq-replay-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True
    )
    await consumer.start()
    await producer.start()
    sent = 0
    try:
        partitions = consumer.partitions_for_topic(dlq) or set()
        if not partitions:
            await consumer.stop()
            return 0
        tps = [TopicPartition(dlq, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining and (limit is None or sent < limit):
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=500)
            done: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp] or (limit is not None and sent >= limit):
                        remaining.discard(tp)
                        break
                    headers = [(k, v) for k, v in record.headers if k not in DLQ_HEADERS]
                    await producer.send(topic, value=record.value, key=record.key, headers=headers)
                    done[tp] = record.offset + 1
                    sent += 1
                if done.get(tp, 0) >= ends[tp]:
                    remaining.discard(tp)
            await producer.flush()
            if done:
                await consumer.commit(done)
    finally:
        await producer.stop()
        await consumer.stop()
    return sent
