"""An interrupted handler leaves its message unacknowledged; a failing one dead-letters it.

Every rule is checked for both runners: one event at a time (`process_events`) and in batches
(`process_in_batches`, whose stream acknowledges a whole batch when the next one is taken).
"""

from __future__ import annotations

import asyncio

import pytest
from faust.streams import current_event

from agents.delivery import HandlerFailed, process_events, process_in_batches


class FakeConsumer:
    def __init__(self) -> None:
        self.assigned = {("t", 0)}

    def assignment(self) -> set[tuple[str, int]]:
        return set(self.assigned)


class FakeApp:
    """The rebalance state Faust keeps on the app, driven by hand."""

    def __init__(self) -> None:
        self.rebalancing, self.rebalancing_count, self.consumer_generation_id = False, 0, 1
        self.consumer = FakeConsumer()

    def revoke(self, *partitions: tuple[str, int]) -> None:
        """What Faust does the moment a rebalance starts, then once the new assignment is in."""
        self.rebalancing = True
        self.rebalancing_count += 1
        self.consumer.assigned -= set(partitions)
        self.consumer_generation_id += 1
        self.rebalancing = False


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = "t", 0, offset
        self.tp = (self.topic, self.partition)
        self.refcount = 1  # the stream's own reference, released by Faust's ack

    def incref(self) -> None:
        self.refcount += 1

    def decref(self) -> None:
        self.refcount -= 1


class FakeEvent:
    def __init__(self, message: FakeMessage) -> None:
        self.message = message


class FakeStream:
    def __init__(self, n: int) -> None:
        self.app = FakeApp()
        self.events_list = [FakeEvent(FakeMessage(i)) for i in range(n)]

    def events(self):
        self.generator = self._events()
        return self.generator

    async def _events(self):
        for event in self.events_list:
            try:
                yield event
            finally:
                event.message.decref()  # Faust acks in a finally, even when interrupted

    def take_events(self, max_: int, within: float):
        self.generator = self._take_events(max_)
        return self.generator

    async def _take_events(self, max_: int):
        for start in range(0, len(self.events_list), max_):
            batch = self.events_list[start : start + max_]
            try:
                yield list(batch)
            finally:
                for event in batch:  # take_events acks the batch in a finally, like events()
                    event.message.decref()


async def one_at_a_time(stream, agent, handler, dead_letter) -> None:
    await process_events(stream, agent, handler, dead_letter)


async def in_batches(stream, agent, handler, dead_letter, after_batch=None) -> None:
    async def nothing() -> None:
        pass

    await process_in_batches(
        stream, agent, handler, dead_letter, max_events=2, within_s=0.01,
        after_batch=after_batch or nothing,
    )


@pytest.fixture(params=[one_at_a_time, in_batches], ids=["events", "batches"])
def run(request):
    """Every rule test below runs with both runners."""
    return request.param


async def test_completed_events_are_released_for_the_ack(run) -> None:
    stream = FakeStream(3)
    seen = []

    async def handler(event) -> None:
        seen.append(event.message.offset)

    async def dead_letter(event, error) -> None:
        raise AssertionError("nothing to dead-letter")

    await run(stream, "a", handler, dead_letter)
    assert seen == [0, 1, 2]
    assert [e.message.refcount for e in stream.events_list] == [0, 0, 0]


async def test_an_interrupted_handler_keeps_its_message_unacknowledged(run) -> None:
    stream = FakeStream(2)
    started = asyncio.Event()

    async def handler(event) -> None:
        started.set()
        await asyncio.sleep(3600)  # e.g. waiting out a registry outage

    async def dead_letter(event, error) -> None:
        raise AssertionError("an interruption is not poison")

    task = asyncio.create_task(run(stream, "a", handler, dead_letter))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.generator.aclose()  # the stream stops: its finally acks the current event
    assert stream.events_list[0].message.refcount == 1, "the final ack must not happen"


async def test_a_failing_handler_dead_letters_and_goes_on(run) -> None:
    stream = FakeStream(2)
    dead = []

    async def handler(event) -> None:
        if event.message.offset == 0:
            raise KeyError("bug")

    async def dead_letter(event, error) -> None:
        dead.append((event.message.offset, error))

    await run(stream, "a", handler, dead_letter)
    assert [offset for offset, _ in dead] == [0]
    assert isinstance(dead[0][1], HandlerFailed) and dead[0][1].stage == "apply"
    assert [e.message.refcount for e in stream.events_list] == [0, 0]


async def test_a_transient_error_is_retried_never_dead_lettered(run) -> None:
    from app.errors import SchemaRegistryUnavailable

    stream = FakeStream(2)
    attempts: list[int] = []

    async def handler(event) -> None:
        attempts.append(event.message.offset)
        if attempts.count(0) < 3:
            raise SchemaRegistryUnavailable("registry answered 503")

    async def dead_letter(event, error) -> None:
        raise AssertionError("an outage is not poison")

    await asyncio.wait_for(run(stream, "a", handler, dead_letter), 10)
    assert attempts == [0, 0, 0, 1]
    assert [e.message.refcount for e in stream.events_list] == [0, 0]


async def test_a_handler_whose_partition_is_revoked_meanwhile_writes_nothing(run) -> None:
    from app.ownership import ensure_owned

    stream = FakeStream(2)
    written: list[int] = []
    waiting = asyncio.Event()
    resume = asyncio.Event()

    async def handler(event) -> None:
        if event.message.offset == 0:
            waiting.set()
            await resume.wait()  # e.g. waiting out a registry outage
        ensure_owned()  # what every table write does first
        written.append(event.message.offset)

    async def dead_letter(event, error) -> None:
        raise AssertionError("a revoked partition is not poison")

    task = asyncio.create_task(run(stream, "a", handler, dead_letter))
    await asyncio.wait_for(waiting.wait(), 5)
    stream.app.revoke(("t", 0))  # the partition moves to another worker
    resume.set()
    await asyncio.wait_for(task, 5)
    assert written == [], "neither the in-flight event nor the next one may write"
    assert [e.message.refcount for e in stream.events_list] == [1, 1], "nothing acknowledged"


async def test_a_handler_still_owning_its_partition_after_a_rebalance_is_not_stopped(run) -> None:
    stream = FakeStream(1)
    written: list[int] = []

    async def handler(event) -> None:
        from app.ownership import ensure_owned

        ensure_owned()
        written.append(event.message.offset)

    async def dead_letter(event, error) -> None:
        raise AssertionError("nothing to dead-letter")

    stream.app.revoke()  # a rebalance that left ("t", 0) here, before the event started
    await run(stream, "a", handler, dead_letter)
    assert written == [0]
    assert stream.events_list[0].message.refcount == 0


async def test_waiting_out_an_outage_stops_once_the_partition_is_revoked(run) -> None:
    from app.errors import SchemaRegistryUnavailable

    stream = FakeStream(1)
    attempts: list[int] = []

    async def handler(event) -> None:
        attempts.append(event.message.offset)
        if len(attempts) == 2:
            stream.app.revoke(("t", 0))
        raise SchemaRegistryUnavailable("registry answered 503")

    async def dead_letter(event, error) -> None:
        raise AssertionError("an outage is not poison")

    await asyncio.wait_for(run(stream, "a", handler, dead_letter), 10)
    assert attempts == [0, 0], "no attempt after the partition left"
    assert stream.events_list[0].message.refcount == 1


async def test_an_event_arriving_during_a_rebalance_waits_for_its_end_then_runs_here(run) -> None:
    from app import ownership

    stream = FakeStream(1)
    written: list[int] = []

    async def handler(event) -> None:
        ownership.ensure_owned()
        written.append(event.message.offset)

    async def dead_letter(event, error) -> None:
        raise AssertionError("nothing to dead-letter")

    stream.app.rebalancing = True  # recovery is still running; ("t", 0) stays here
    task = asyncio.create_task(run(stream, "a", handler, dead_letter))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and written == [], "nothing may run before the rebalance ends"
    stream.app.rebalancing = False
    ownership.on_rebalance_end(stream.app)
    await asyncio.wait_for(task, 5)
    assert written == [0], "the partition stayed here: the event is processed, not left"
    assert stream.events_list[0].message.refcount == 0


async def test_an_event_waiting_out_a_rebalance_that_moved_its_partition_is_left(run) -> None:
    from app import ownership

    stream = FakeStream(1)

    async def handler(event) -> None:
        raise AssertionError("the partition is another worker's now")

    async def dead_letter(event, error) -> None:
        raise AssertionError("a revoked partition is not poison")

    stream.app.rebalancing = True
    task = asyncio.create_task(run(stream, "a", handler, dead_letter))
    await asyncio.sleep(0)
    stream.app.consumer.assigned.clear()
    stream.app.consumer_generation_id += 1
    stream.app.rebalancing = False
    ownership.on_rebalance_end(stream.app)
    await asyncio.wait_for(task, 5)
    assert stream.events_list[0].message.refcount == 1, "left unacknowledged to its owner"


async def test_a_batch_is_released_only_after_its_after_batch_step() -> None:
    stream = FakeStream(5)
    handled: list[int] = []
    held_at_hand_over: list[list[int]] = []

    async def handler(event) -> None:
        handled.append(event.message.offset)

    async def after_batch() -> None:
        # What the object agents do here: hand the batch's buffered records to the client.
        held_at_hand_over.append([e.message.refcount for e in stream.events_list])

    async def dead_letter(event, error) -> None:
        raise AssertionError("nothing to dead-letter")

    await in_batches(stream, "a", handler, dead_letter, after_batch)
    assert handled == [0, 1, 2, 3, 4]
    assert held_at_hand_over == [[2, 2, 1, 1, 1], [0, 0, 2, 2, 1], [0, 0, 0, 0, 2]], (
        "each batch is still held (stream + handler references) when its hand-over runs"
    )
    assert [e.message.refcount for e in stream.events_list] == [0] * 5


async def test_an_interrupted_hand_over_keeps_the_whole_batch_unacknowledged() -> None:
    stream = FakeStream(3)
    handing_over = asyncio.Event()

    async def handler(event) -> None:
        pass

    async def after_batch() -> None:
        handing_over.set()
        await asyncio.sleep(3600)  # e.g. the worker stops while records are handed over

    async def dead_letter(event, error) -> None:
        raise AssertionError("an interruption is not poison")

    task = asyncio.create_task(in_batches(stream, "a", handler, dead_letter, after_batch))
    await asyncio.wait_for(handing_over.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.generator.aclose()  # take_events acks the batch in its finally
    assert [e.message.refcount for e in stream.events_list[:2]] == [1, 1], (
        "handled but not handed over: no final ack"
    )


async def test_a_transient_error_in_the_hand_over_is_retried() -> None:
    from app.errors import SchemaRegistryUnavailable

    stream = FakeStream(2)
    attempts = 0

    async def handler(event) -> None:
        pass

    async def after_batch() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise SchemaRegistryUnavailable("broker metadata unavailable")

    async def dead_letter(event, error) -> None:
        raise AssertionError("an outage is not poison")

    await asyncio.wait_for(in_batches(stream, "a", handler, dead_letter, after_batch), 10)
    assert attempts == 3
    assert [e.message.refcount for e in stream.events_list] == [0, 0]


async def test_each_event_of_a_batch_is_faust_current_event_while_it_is_handled() -> None:
    """Faust's tables write to the partition of the current event: in a batch that must be the
    event being handled, not the batch's last one."""
    stream = FakeStream(4)
    seen: list[tuple[int, int]] = []

    async def handler(event) -> None:
        await asyncio.sleep(0)  # across a suspension too
        seen.append((event.message.offset, current_event().message.offset))

    async def dead_letter(event, error) -> None:
        raise AssertionError("nothing to dead-letter")

    await in_batches(stream, "a", handler, dead_letter)
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert current_event() is None, "nothing left set in the caller's context"
