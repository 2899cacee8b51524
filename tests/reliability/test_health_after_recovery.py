"""A worker that recovered its tables from non-empty changelogs and is quiet must report zero
lag and stay alive: liveness failing on a healthy worker makes Kubernetes restart it in a loop
(every restart recovers the changelogs again, and fails again one stall period later)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.conftest import await_condition
from tests.integration.test_orders_slice import get_json
from tests.integration.test_restarts import produce_orders, wait_orders
from tests.reliability.cluster import http_get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STALL_S = 5


async def test_quiet_worker_after_recovery_has_no_lag_and_stays_alive(deployment) -> None:
    worker = deployment(HEALTH_STALL_SECONDS=str(STALL_S))
    worker.start()
    worker.wait_ready()
    ids = [f"ORD-{i}" for i in range(30)]
    await produce_orders(worker.env, ids, 1, "NEW")
    await wait_orders(worker, ids, 1)
    assert worker.stop() == 0
    worker.start()  # recovers the tables from their changelogs
    worker.wait_ready(60)
    await wait_orders(worker, ids, 1)

    def detailed() -> dict:
        _, body = http_get(worker.url + "/health/detailed")
        return json.loads(body)["components"]["consumer"] if body else {}

    await await_condition(
        lambda: detailed().get("totalLag") == 0, 20, f"zero lag at quiet (consumer: {detailed()})"
    )
    watch_until = time.monotonic() + STALL_S * 2 + 2  # past the stall threshold
    while time.monotonic() < watch_until:
        status, _ = get_json(worker.url + "/health/liveness")
        assert status == 200, f"liveness {status} on a quiet worker: {detailed()}"
        await asyncio.sleep(0.5)  # pacing of the watch, not a wait for a result
    assert worker.stop() == 0
