"""Bulk changelog restore against the embedded broker: `tables.restore` with a real aiokafka
consumer, and a real worker rebuilding its tables after a kill -9 through it."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rocksdict import Options, Rdict

from app.broker import create_topics
from tables.restore import RestoreTarget, restore_changelogs
from tests.conftest import await_condition
from tests.integration.test_objects_mix import metric, scrape
from tests.integration.test_orders_slice import get_json
from tests.integration.test_restarts import produce_orders, wait_orders

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

OFFSET_KEY = b"__faust\0offset__"


async def test_a_changelog_on_the_broker_is_restored_to_its_last_values(broker, tmp_path) -> None:
    topic = f"restore-{uuid.uuid4().hex[:8]}-changelog"
    await create_topics(broker.bootstrap, [topic], 2, compacted=[topic])
    rng = random.Random(7)
    model: dict[int, dict[bytes, bytes]] = {0: {}, 1: {}}
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for i in range(6_000):
            partition = i % 2
            key = f"k{rng.randrange(500)}".encode()
            value = None if rng.random() < 0.1 else f"v{i}".encode() * rng.randint(1, 40)
            await producer.send(topic, value=value, key=key, partition=partition)
            if value is None:
                model[partition].pop(key, None)
            else:
                model[partition][key] = value
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in (0, 1)]
    ends = await consumer.end_offsets(tps)
    dbs = {tp: Rdict(str(tmp_path / f"p{tp.partition}"), Options(raw_mode=True)) for tp in tps}
    try:
        result = await restore_changelogs(
            consumer,
            {tp: RestoreTarget(dbs[tp], 0, ends[tp]) for tp in tps},
            offset_key=OFFSET_KEY,
            deadline=time.monotonic() + 60,
        )
    finally:
        await consumer.stop()
    try:
        assert result.complete == set(tps)
        assert sum(result.records.values()) == 6_000
        for tp in tps:
            restored = {k: v for k, v in dbs[tp].items() if k != OFFSET_KEY}
            assert restored == model[tp.partition]
            assert dbs[tp][OFFSET_KEY] == str(ends[tp] - 1).encode()
    finally:
        for db in dbs.values():
            db.close()


def restored_records(worker, table: str) -> float:
    return metric(scrape(worker.url), "blotter_changelog_records_restored_total", table=table)


async def test_a_worker_rebuilds_its_tables_in_bulk_after_a_kill9(deployment) -> None:
    worker = deployment()
    worker.start()
    worker.wait_ready()
    ids = [f"ORD-B{i}" for i in range(300)]
    await produce_orders(worker.env, ids, 1, "NEW")
    await produce_orders(worker.env, ids, 2, "PARTIALLY_FILLED")
    await wait_orders(worker, ids, 2)
    assert restored_records(worker, "latest-order") == 0  # nothing to restore at first start

    worker.kill()  # no clean-shutdown marker: every local store is dropped and rebuilt
    worker.start()
    worker.wait_ready(30)
    # 600 changelog records (two versions of 300 orders), all through the bulk restore
    assert restored_records(worker, "latest-order") == 600
    for order_id in random.Random(3).sample(ids, 30):
        status, body = get_json(f"{worker.url}/v1/objects/Order/{order_id}")
        assert status == 200 and body["sequence"] == 2, (order_id, status, body)
    # the agents work on the restored state: an older version is stale, a newer one applies
    await produce_orders(worker.env, ids[:10], 1, "NEW")
    stale = "blotter_events_stale_total"
    await await_condition(lambda: metric(scrape(worker.url), stale) >= 10, 30, "10 stale orders")
    status, body = get_json(f"{worker.url}/v1/objects/Order/{ids[0]}")
    assert body["sequence"] == 2
    await produce_orders(worker.env, ids[:10], 3, "FILLED")
    await wait_orders(worker, ids[:10], 3)
    assert worker.stop() == 0
