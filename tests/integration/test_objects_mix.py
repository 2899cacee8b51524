"""Valid, stale, duplicate, out-of-order, re-keyed and poison messages across partitions: every
table row and every DLQ record (with headers) against the expected outcome, and the counters."""

from __future__ import annotations

import random
import struct
import urllib.request

import pytest
from aiokafka import AIOKafkaConsumer

from app.config import load_settings
from app.dlq import header_dict
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import await_condition
from tests.integration.test_orders_slice import get_json, order

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in samples.items():
        if key.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list = []
    try:
        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                records.extend(msgs)
            return len(records) >= expected

        await await_condition(enough, timeout, f"{expected} records on {topic}")
        extra = await consumer.getmany(timeout_ms=500)  # nothing more may arrive
        for msgs in extra.values():
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records


async def test_every_message_is_applied_stale_or_dead_lettered(deployment) -> None:
    worker = deployment()
    worker.start()
    worker.wait_ready()
    settings = load_settings(worker.env)
    serde = build_serde(None)
    topic = settings.topics.orders
    rng = random.Random(7)

    ids = [f"ORD-{i:03d}" for i in range(40)]
    versions = [(oid, seq) for oid in ids for seq in (1, 2, 3)]
    duplicates = rng.sample(versions, 30)
    deliveries = versions + duplicates
    rng.shuffle(deliveries)
    statuses = {1: "PENDING_NEW", 2: "NEW", 3: "FILLED"}

    good = serde.encode(order("P-1", 1, "NEW"), "Order", "order-events-value")
    poison = {
        "bad-magic": b"\x07" + good[1:],
        "truncated": good[: len(good) // 2],
        "unknown-id": struct.pack(">bI", 0, 999) + good[5:],
        "invalid-enum": serde.encode(
            {**order("P-2", 1, "NEW"), "side": "UNKNOWN"}, "Order", "order-events-value"
        ),
        "missing-id": serde.encode(order("", 1, "NEW"), "Order", "order-events-value"),
    }
    expected_stage = {
        "bad-magic": "decode",
        "truncated": "decode",
        "unknown-id": "decode",
        "invalid-enum": "validate",
        "missing-id": "validate",
    }

    async with OmsProducer(settings, serde) as producer:
        for i, (oid, seq) in enumerate(deliveries):
            # Every fifth message is keyed by account (not the order id): it must be re-keyed.
            key = "ACC-1" if i % 5 == 0 else oid
            await producer.send_record("orders", key, "Order", order(oid, seq, statuses[seq]))
        for name, data in poison.items():
            await producer.send(topic, name, data, headers=[("trace", name.encode())])
        await producer.flush()

    async def all_latest() -> bool:
        for oid in ids:
            status, body = get_json(f"{worker.url}/v1/objects/Order/{oid}")
            if status != 200 or body["sequence"] != 3:
                return False
        return True

    await await_condition(all_latest, 60, "all 40 orders at sequence 3")
    for oid in ids:
        _, body = get_json(f"{worker.url}/v1/objects/Order/{oid}")
        assert body["status"] == "FILLED" and body["orderId"] == oid
    assert get_json(f"{worker.url}/v1/objects/Order/P-2")[0] == 404

    # Paging through every partition, from the replica, in id order.
    async def paged_ids() -> list[str]:
        seen: list[str] = []
        after = ""
        while True:
            status, body = get_json(f"{worker.url}/v1/objects/Order?limit=7&after={after}")
            assert status == 200, body
            seen += [row["orderId"] for row in body["items"]]
            if body["next"] is None:
                return seen
            after = body["next"]

    async def replica_complete() -> bool:
        return await paged_ids() == ids

    await await_condition(replica_complete, 30, "all orders paged in id order")
    assert get_json(f"{worker.url}/v1/objects/Order?limit=0")[0] == 400

    dlq = await read_all(settings.bootstrap_servers, f"{topic}-dlq", len(poison))
    assert len(dlq) == len(poison)
    by_name = {r.key.decode(): r for r in dlq}
    assert set(by_name) == set(poison)
    for name, record in by_name.items():
        headers = header_dict(record.headers)
        assert record.value == poison[name], "DLQ must keep the original bytes"
        assert headers["trace"] == name, "original headers are kept"
        assert headers["dlq.stage"] == expected_stage[name]
        assert headers["dlq.original.topic"] == topic
        assert int(headers["dlq.original.partition"]) in range(4)
        assert int(headers["dlq.original.offset"]) >= 0
        assert headers["dlq.error.class"] in ("DecodeError", "ValidationError")
        assert headers["dlq.error.message"]
        assert headers["dlq.app.version"]
        assert int(headers["dlq.original.timestamp"]) > 0

    samples = scrape(worker.url)
    total_in = len(deliveries) + len(poison)
    applied = metric(samples, "blotter_events_applied_total", topic=topic)
    stale = metric(samples, "blotter_events_stale_total", topic=topic)
    dead = metric(samples, "blotter_events_dead_lettered_total", topic=topic)
    rekeyed = metric(samples, "blotter_events_rekeyed_total", topic=topic)
    print(
        f"\nin={total_in} applied={applied:.0f} stale={stale:.0f} dead_lettered={dead:.0f} "
        f"rekeyed={rekeyed:.0f}"
    )
    assert metric(samples, "blotter_events_in_total", topic=topic) == total_in
    assert dead == len(poison)
    assert applied + stale + dead == total_in
    # At least one version per id is applied; how many of the rest are stale depends on order.
    assert len(ids) <= applied <= len(versions)
    assert rekeyed == len([i for i in range(len(deliveries)) if i % 5 == 0])

    # A valid message dead-lettered by an earlier (buggy) release is re-submitted once.
    fixed = serde.encode(order("ORD-FIX", 1, "NEW"), "Order", "order-events-value")
    async with OmsProducer(settings, serde) as producer:
        await producer.send(f"{topic}-dlq", "ORD-FIX", fixed, headers=[("dlq.stage", b"apply")])
        await producer.flush()
    first = replay_dlq(worker, topic)
    assert f"re-submitted {len(poison) + 1} messages" in first
    await await_condition(
        lambda: get_json(f"{worker.url}/v1/objects/Order/ORD-FIX")[0] == 200, 30, "ORD-FIX"
    )
    # The unfixed poison went back to the DLQ; a second run re-submits only those.
    await read_all(settings.bootstrap_servers, f"{topic}-dlq", 2 * len(poison) + 1)
    second = replay_dlq(worker, topic)
    assert f"re-submitted {len(poison)} messages" in second
    samples = scrape(worker.url)
    assert metric(samples, "blotter_events_applied_total", topic=topic) == applied + 1
    assert worker.stop() == 0


def replay_dlq(worker, topic: str) -> str:
    import subprocess
    import sys

    env = dict(worker.env)
    out = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "app.main", "replay-dlq", "--topic", topic],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    return out.stdout
