"""A static member that stops cleanly hands its partitions over at once (scale-down), against
the embedded broker, which never evicts a silent member: without the LeaveGroup the survivor
would keep half the partitions unconsumed for as long as this test waits."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from app.broker import EmbeddedBroker, create_topics
from app.membership import install_leave_group_on_shutdown
from tests.conftest import await_condition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def test_a_cleanly_stopped_static_member_leaves_and_the_other_takes_over(
    broker: EmbeddedBroker,
) -> None:
    install_leave_group_on_shutdown()
    tag = uuid.uuid4().hex[:8]
    topic, group = f"leave-{tag}", f"leave-group-{tag}"
    await create_topics(broker.bootstrap, [topic], 4)

    def member(name: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            group_instance_id=f"{group}-{name}",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )

    leaving, staying = member("a"), member("b")
    await leaving.start()
    await staying.start()
    try:
        await await_condition(
            lambda: len(leaving.assignment()) == 2 and len(staying.assignment()) == 2,
            30, "the two members to split the 4 partitions",
        )
        stopped = time.monotonic()
        await leaving.stop()
        await await_condition(
            lambda: len(staying.assignment()) == 4, 20, "the survivor to own all 4 partitions"
        )
        assert time.monotonic() - stopped < 20
    finally:
        await staying.stop()
