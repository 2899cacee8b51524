"""An interrupted handler leaves its message unacknowledged; a failing one dead-letters it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from agents.delivery import HandlerFailed, process_events


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = "t", 0, offset
        self.refcount = 1  # the stream's own reference, released by Faust's ack

    def incref(self) -> None:
        self.refcount += 1

    def decref(self) -> None:
        self.refcount -= 1


class FakeStream:
    def __init__(self, n: int) -> None:
        self.events_list = [SimpleNamespace(message=FakeMessage(i)) for i in range(n)]

    def events(self):
        self.generator = self._events()
        return self.generator

    async def _events(self):
        for event in self.events_list:
            try:
                yield event
            finally:
                event.message.decref()  # Faust acks in a finally, even when interrupted


async def test_completed_events_are_released_for_the_ack() -> None:
    stream = FakeStream(3)
    seen = []

    async def handler(event) -> None:
        seen.append(event.message.offset)

    async def dead_letter(event, error) -> None:
        raise AssertionError("nothing to dead-letter")

    await process_events(stream, "a", handler, dead_letter)
    assert seen == [0, 1, 2]
    assert [e.message.refcount for e in stream.events_list] == [0, 0, 0]


async def test_an_interrupted_handler_keeps_its_message_unacknowledged() -> None:
    stream = FakeStream(2)
    started = asyncio.Event()

    async def handler(event) -> None:
        started.set()
        await asyncio.sleep(3600)  # e.g. waiting out a registry outage

    async def dead_letter(event, error) -> None:
        raise AssertionError("an interruption is not poison")

    task = asyncio.create_task(process_events(stream, "a", handler, dead_letter))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.generator.aclose()  # the stream stops: its finally acks the current event
    assert stream.events_list[0].message.refcount == 1, "the final ack must not happen"


async def test_a_failing_handler_dead_letters_and_goes_on() -> None:
    stream = FakeStream(2)
    dead = []

    async def handler(event) -> None:
        if event.message.offset == 0:
            raise KeyError("bug")

    async def dead_letter(event, error) -> None:
        dead.append((event.message.offset, error))

    await process_events(stream, "a", handler, dead_letter)
    assert [offset for offset, _ in dead] == [0]
    assert isinstance(dead[0][1], HandlerFailed) and dead[0][1].stage == "apply"
    assert [e.message.refcount for e in stream.events_list] == [0, 0]


async def test_a_transient_error_is_retried_never_dead_lettered() -> None:
    from app.errors import SchemaRegistryUnavailable

    stream = FakeStream(2)
    attempts: list[int] = []

    async def handler(event) -> None:
        attempts.append(event.message.offset)
        if attempts.count(0) < 3:
            raise SchemaRegistryUnavailable("registry answered 503")

    async def dead_letter(event, error) -> None:
        raise AssertionError("an outage is not poison")

    await asyncio.wait_for(process_events(stream, "a", handler, dead_letter), 10)
    assert attempts == [0, 0, 0, 1]
    assert [e.message.refcount for e in stream.events_list] == [0, 0]
