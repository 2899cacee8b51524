"""A produce request takes every batch for a broker once one of them may leave (app.send_batching).

Runs aiokafka's own accumulator: two partitions on one broker receive records a moment apart,
as when an agent hands a batch of changelog records and changes to the client at once.
"""

from __future__ import annotations

from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import TopicPartition

from app import send_batching

LINGER_MS = 50


class OneBroker:
    """The cluster metadata the accumulator asks: every partition is led by broker 0, except
    the partitions of topic `elsewhere`, led by broker 1."""

    def leader_for_partition(self, tp: TopicPartition) -> int:
        return 1 if tp.topic == "elsewhere" else 0


async def accumulator_with(*tps: TopicPartition) -> MessageAccumulator:
    acc = MessageAccumulator(OneBroker(), 16384, 0, 30, linger_ms=LINGER_MS)
    for tp in tps:
        await acc.add_message(tp, b"k", b"v", timeout=1)
    return acc


def linger_out(acc: MessageAccumulator, tp: TopicPartition) -> None:
    acc._batches[tp][0]._ctime -= LINGER_MS / 1000  # this batch was created a linger ago


async def test_batches_for_the_same_broker_leave_in_one_request() -> None:
    send_batching.install()
    changelog, changes = TopicPartition("changelog", 0), TopicPartition("changes", 3)
    acc = await accumulator_with(changelog, changes)
    linger_out(acc, changelog)  # the changes batch was created after it: still lingering

    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())

    assert set(nodes) == {0}
    assert set(nodes[0]) == {changelog, changes}, "both leave in the one request"


async def test_nothing_leaves_before_some_batch_for_its_broker_stops_lingering() -> None:
    send_batching.install()
    here, elsewhere = TopicPartition("changes", 0), TopicPartition("elsewhere", 0)
    acc = await accumulator_with(here, elsewhere)
    linger_out(acc, here)

    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())

    assert set(nodes) == {0}, "broker 1 has no sendable batch: its batch keeps lingering"
    assert list(acc._batches[elsewhere]), "still in the accumulator"
    assert acc.drain_by_nodes(ignore_nodes=set())[0] == {}


async def test_a_broker_with_a_request_in_flight_is_left_alone() -> None:
    send_batching.install()
    a, b = TopicPartition("changelog", 0), TopicPartition("changes", 1)
    acc = await accumulator_with(a, b)
    linger_out(acc, a)

    nodes, _ = acc.drain_by_nodes(ignore_nodes={0})

    assert nodes == {}
    assert list(acc._batches[a]) and list(acc._batches[b])
