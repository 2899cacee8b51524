"""Faust's producer buffer flush must not return while records are still buffered: offsets are
committed right after it (app.faust_fixes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP as TopicPartition
from mode import Service

from app import faust_fixes
from app.output_batches import changelog_batches

pytestmark = pytest.mark.timeout(30)


class SlowChannel:
    """A channel whose hand-over to the client takes longer than Faust's 0.1 s flush wait."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.message.n)


@pytest.fixture
async def buffer() -> AsyncIterator[ProducerBuffer]:
    """A running producer buffer with the corrections installed."""
    faust_fixes.install()
    running = ProducerBuffer()
    running.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_flush_waits_for_every_buffered_record_even_when_sends_are_slow(
    buffer: ProducerBuffer,
) -> None:
    channel = SlowChannel(0.25)
    for n in range(4):
        buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel, n=n)))
    await buffer.flush()
    # Faust's own flush returned after ~0.1 s with all four still buffered.
    assert channel.published == [0, 1, 2, 3]
    assert buffer.size == 0


async def test_flush_of_an_empty_buffer_returns_at_once(buffer: ProducerBuffer) -> None:
    await asyncio.wait_for(buffer.flush(), timeout=0.05)


class InstantChannel:
    """A channel whose hand-over completes without suspending (the usual aiokafka send)."""

    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
        self.published.append(fut.message.n)


def record(channel: Any, n: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(channel=channel, n=n))


async def test_hand_over_sends_every_buffered_record_in_order_before_returning(
    buffer: ProducerBuffer,
) -> None:
    channel = InstantChannel()
    for n in range(3):
        buffer.put(record(channel, n))
    await faust_fixes.hand_over_buffered(buffer)  # no trip through the event loop needed
    assert channel.published == [0, 1, 2]
    assert buffer.size == 0


async def test_hand_over_waits_behind_a_record_the_buffer_task_is_sending(
    buffer: ProducerBuffer,
) -> None:
    slow, instant = SlowChannel(0.2), InstantChannel()
    instant.published = slow.published  # one client: the order of both is what counts
    buffer.put(record(slow, 0))
    await asyncio.sleep(0.01)  # the buffer's task has taken record 0 and is sending it
    buffer.put(record(instant, 1))
    buffer.put(record(instant, 2))
    await faust_fixes.hand_over_buffered(buffer)
    assert slow.published == [0, 1, 2]  # sending 1 and 2 at once would have put them first
    assert buffer.size == 0


# -- the drain loop's per-message hand-over ---------------------------------------------------
class DrainingConsumer(Service):
    """What `Consumer.wait_first` uses of a consumer: the service events and `suspend_flow`."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


async def hand_over(consumer: DrainingConsumer, callback: Coroutine[Any, Any, Any]) -> Any:
    """The drain loop's call, exactly as Faust makes it."""
    faust_fixes.install()
    return await Consumer.wait_first(consumer, callback, consumer.suspend_flow.wait())


async def test_a_callback_that_does_not_suspend_runs_in_the_drain_task_itself() -> None:
    ran_in: list[asyncio.Task | None] = []

    async def callback() -> None:
        ran_in.append(asyncio.current_task())

    await hand_over(DrainingConsumer(), callback())
    assert ran_in == [asyncio.current_task()]  # no task per message


async def test_a_callback_that_suspends_is_finished_by_the_original_wait() -> None:
    room = asyncio.Event()
    steps: list[str] = []

    async def callback() -> None:
        steps.append("started")
        await room.wait()  # the agent's queue is full
        steps.append("delivered")

    waiting = asyncio.ensure_future(hand_over(DrainingConsumer(), callback()))
    await asyncio.sleep(0.01)
    assert steps == ["started"] and not waiting.done()
    room.set()
    await asyncio.wait_for(waiting, timeout=1)
    assert steps == ["started", "delivered"]


async def test_suspending_flow_abandons_a_callback_that_is_still_waiting() -> None:
    consumer = DrainingConsumer()
    steps: list[str] = []

    async def callback() -> None:
        try:
            await asyncio.Event().wait()  # never gets room
            steps.append("delivered")
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise

    waiting = asyncio.ensure_future(hand_over(consumer, callback()))
    await asyncio.sleep(0.01)
    consumer.suspend_flow.set()  # a rebalance starts
    await asyncio.wait_for(waiting, timeout=1)
    await asyncio.sleep(0)  # let the cancelled callback run its handler
    assert steps == ["cancelled"]


async def test_while_flow_is_suspended_the_original_wait_is_used() -> None:
    consumer = DrainingConsumer()
    consumer.suspend_flow.set()
    ran: list[str] = []

    async def callback() -> None:
        await asyncio.sleep(0.05)
        ran.append("delivered")

    await asyncio.wait_for(hand_over(consumer, callback()), timeout=1)
    assert ran == []  # the set flow event won: the message is not handed over


async def test_an_error_in_the_first_step_propagates() -> None:
    async def callback() -> None:
        raise ValueError("bad message")

    with pytest.raises(ValueError, match="bad message"):
        await hand_over(DrainingConsumer(), callback())



# -- seeking and committing -------------------------------------------------------------------
class SeekingConsumer(DrainingConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.flow_active = True
        self.app = SimpleNamespace(consumer_generation_id=1, rebalancing_count=0)
        self.events: list[str] = []
        self.assigned = {("t", 0), ("t", 1)}

    def assignment(self) -> set[tuple[str, int]]:
        return set(self.assigned)

    def stop_flow(self) -> None:
        self.flow_active = False
        self.suspend_flow.set()
        self.events.append("flow stopped")

    def resume_flow(self) -> None:
        self.flow_active = True
        self.suspend_flow.clear()
        self.events.append("flow resumed")


async def slow_seek(consumer: SeekingConsumer) -> None:
    consumer.events.append("seek started")
    await asyncio.sleep(0.02)
    consumer.events.append("seek done")


async def test_the_seek_stops_the_flow_and_waits_for_a_hand_over_in_progress() -> None:
    consumer = SeekingConsumer()
    perform_seek = faust_fixes.serialized_seek(slow_seek)

    async def callback() -> None:
        try:
            await asyncio.Event().wait()  # the agent's buffer is full
        finally:
            consumer.events.append("hand-over ended")

    handing_over = asyncio.ensure_future(hand_over(consumer, callback()))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(perform_seek(consumer), timeout=1)
    await handing_over
    assert consumer.events == [
        "flow stopped", "hand-over ended", "seek started", "seek done", "flow resumed",
    ]


async def test_a_seek_while_the_flow_is_stopped_leaves_it_stopped() -> None:
    consumer = SeekingConsumer()
    consumer.flow_active = False
    await faust_fixes.serialized_seek(slow_seek)(consumer)
    assert consumer.events == ["seek started", "seek done"]


async def test_a_rebalance_during_the_seek_keeps_the_flow_stopped() -> None:
    consumer = SeekingConsumer()

    async def seek_interrupted(c: SeekingConsumer) -> None:
        c.app.consumer_generation_id += 1

    await faust_fixes.serialized_seek(seek_interrupted)(consumer)
    assert consumer.events == ["flow stopped"]


def test_the_committed_offset_itself_must_be_processed_before_committing_further() -> None:
    from intervaltree import IntervalTree

    pending = faust_fixes.committed_offset_pending
    assert pending([49, 50, 51], committed=48, gaps=IntervalTree())  # 48 never processed
    assert not pending([48, 49], committed=48, gaps=IntervalTree())
    assert not pending([50], committed=48, gaps=IntervalTree.from_tuples([(48, 50)]))
    assert pending([1], committed=0, gaps=IntervalTree())  # offset 0 is not "no commit"
    # after a seek Faust keeps a committed 0 as None (a partition with no commit is given its
    # start offset): None is offset 0, and 0 itself must be processed first
    assert pending([5], committed=None, gaps=IntervalTree())
    assert not pending([0, 1], committed=None, gaps=IntervalTree())


async def test_a_seek_makes_the_assignment_committable_unless_a_rebalance_began_meanwhile() -> (
    None
):
    consumer = SeekingConsumer()
    await faust_fixes.serialized_seek(slow_seek)(consumer)
    assert faust_fixes.seeked_partitions(consumer) == {("t", 0), ("t", 1)}

    interrupted = SeekingConsumer()

    async def seek_during_a_revocation(c: SeekingConsumer) -> None:
        c.app.rebalancing_count += 1  # Faust's revocation began: committed offsets forgotten

    await faust_fixes.serialized_seek(seek_during_a_revocation)(interrupted)
    assert faust_fixes.seeked_partitions(interrupted) == set()


class AckingConsumer:
    """The bookkeeping Faust's own `ack` and `_new_offset` work on."""

    def __init__(self) -> None:
        from collections import defaultdict

        from intervaltree import IntervalTree

        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self._committed_offset: dict = defaultdict(lambda: None)
        self._acked: dict = defaultdict(list)
        self._acked_index: dict = defaultdict(set)
        self._gap: dict = defaultdict(IntervalTree)
        self._unacked_messages: set = set()
        self._n_acked = 0
        self._waiting_for_ack = None

    def ack(self, offset: int) -> None:
        Consumer.ack(self, AckedMessage(offset))  # type: ignore[arg-type]


class AckedMessage:
    def __init__(self, offset: int) -> None:
        self.acked, self.tp, self.topic, self.offset = False, TP, TP.topic, offset


TP = TopicPartition(topic="executions", partition=0)


def test_nothing_is_committed_between_a_revocation_and_the_next_seek() -> None:
    faust_fixes.install()
    consumer = AckingConsumer()
    # revoked: Faust forgot the committed offset (80). Offset 80 was left unacknowledged to
    # its next owner; a handler that was still running acknowledges 86.
    consumer.ack(86)
    assert Consumer._new_offset(consumer, TP) is None, "Faust alone commits 87, losing 80..85"

    faust_fixes.seeked_partitions(consumer).add(TP)  # assigned again and seeked: committed 80
    consumer._committed_offset[TP] = 80
    assert Consumer._new_offset(consumer, TP) is None, "80..85 are still to be processed"
    for offset in range(80, 86):
        consumer.ack(offset)
    assert Consumer._new_offset(consumer, TP) == 87


class QueuedChangelog:
    """A table's changelog batches (ADR 0014): records queued outside the buffer."""

    def __init__(self, published: list[Any]) -> None:
        self.published = published
        self.queued: list[str] = []

    async def send(self) -> None:
        self.published.extend(self.queued)
        self.queued = []


async def test_every_hand_over_and_flush_sends_the_tables_changelog_first(
    buffer: ProducerBuffer,
) -> None:
    channel = InstantChannel()
    changelog = QueuedChangelog(channel.published)
    changelog_batches(buffer.app).append(changelog)
    changelog.queued = ["state 1"]
    await faust_fixes.hand_over_buffered(buffer)  # nothing buffered: the object agents' case
    assert channel.published == ["state 1"], "a change feed sent next must not overtake it"
    changelog.queued = ["state 2"]
    buffer.put(record(channel, 2))
    await faust_fixes.hand_over_buffered(buffer)
    changelog.queued = ["state 3"]
    await buffer.flush()  # before a commit
    assert channel.published == ["state 1", "state 2", 2, "state 3"]
