"""Restarts against the embedded broker: clean stop, kill -9 with static membership, and local
state that no longer matches the broker's topics."""

from __future__ import annotations

import time

import pytest

from app.broker import EmbeddedBroker, free_port
from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import await_condition
from tests.integration.test_orders_slice import get_json, order

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def produce_orders(env: dict, ids: list[str], sequence: int, status: str) -> None:
    async with OmsProducer(load_settings(env), build_serde(None)) as producer:
        for order_id in ids:
            value = order(order_id, sequence, status)
            await producer.send_record("orders", order_id, "Order", value)
        await producer.flush()


async def wait_orders(worker, ids: list[str], sequence: int, timeout: float = 60) -> None:
    pending = set(ids)

    def done() -> bool:
        for order_id in list(pending):
            status, body = get_json(f"{worker.url}/v1/objects/Order/{order_id}")
            if status == 200 and body["sequence"] == sequence:
                pending.discard(order_id)
            else:
                return False
        return True

    await await_condition(done, timeout, f"{len(pending)} orders at sequence {sequence}")


async def test_clean_restart_and_kill9_resume(deployment) -> None:
    worker = deployment()
    worker.start()
    worker.wait_ready()
    ids = [f"ORD-{i}" for i in range(50)]
    await produce_orders(worker.env, ids, 1, "NEW")
    await wait_orders(worker, ids, 1)

    stop_started = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - stop_started < 15, "SIGTERM shutdown took too long"
    worker.start()
    worker.wait_ready(30)
    await produce_orders(worker.env, ids, 2, "PARTIALLY_FILLED")
    await wait_orders(worker, ids, 2)

    worker.kill()  # kill -9: no LeaveGroup, no final commit
    worker.start()
    ready_s = worker.wait_ready(30)
    assert ready_s < 15, f"replacement took {ready_s:.1f} s to be ready"
    await produce_orders(worker.env, ids, 3, "FILLED")
    await wait_orders(worker, ids, 3)
    _, body = get_json(f"{worker.url}/v1/objects/Order/ORD-7")
    assert body["status"] == "FILLED"


async def test_local_state_dropped_when_broker_topics_are_recreated(deployment, tmp_path) -> None:
    port = free_port()
    broker_dir = tmp_path / "own-broker"
    broker = EmbeddedBroker(port, broker_dir)
    broker.start()
    try:
        worker = deployment(EMBEDDED_BROKER_PORT=str(port))
        worker.start()
        worker.wait_ready()
        ids = [f"OLD-{i}" for i in range(20)]
        await produce_orders(worker.env, ids, 5, "NEW")
        await wait_orders(worker, ids, 5)
        assert worker.stop() == 0

        # The broker loses everything; the worker's RocksDB still has the old rows.
        broker.stop()
        import shutil

        shutil.rmtree(broker_dir)
        broker = EmbeddedBroker(port, broker_dir)
        broker.start()

        worker.start()
        worker.wait_ready(60)
        await produce_orders(worker.env, ["NEW-1"], 1, "NEW")
        await wait_orders(worker, ["NEW-1"], 1)
        status, _ = get_json(f"{worker.url}/v1/objects/Order/OLD-3")
        assert status == 404, "state not backed by the changelog was served"
        assert "ConsistencyError" not in worker.log_tail(400)
        assert worker.stop() == 0
    finally:
        broker.stop()
